//! `stormdrill run --postgres real`: the phase-3 feature (the databases) against a twin
//! whose `postgresql-0` runs Debian's PostgreSQL server as a local process, through the
//! library as the command line does it; verdict go. While the run lasts, a watcher
//! looks for that server among this process's children (a `postgres -D` on the twin's
//! scratch folder), so the verdict cannot rest on the simulated engine by mistake.
//! Skipped with a message without PostgreSQL (scripts/setup.sh installs it), except
//! under CI or `STORMDRILL_REQUIRE_POSTGRES=1`, where its absence fails.

use std::{
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use stormdrill::{
    cli::RunArgs,
    diag,
    target::{PostgresMode, TargetKind},
    verdict::Verdict,
};
use stormdrill_twin::procs::postgres::Postgres;

/// A `postgres` server whose data directory is in this process's twin scratch folder
/// (`/tmp/stormdrill-procs-<pid>-<n>/…`), with its resident memory in KiB.
fn our_postgres() -> Option<u64> {
    let ours = format!("stormdrill-procs-{}-", std::process::id());
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        e.file_name().to_str()?.parse::<u32>().ok()?;
        let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
        let argv: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let is_server = argv.first().is_some_and(|a| a.ends_with("/postgres"))
            && argv
                .windows(2)
                .any(|w| w[0] == "-D" && w[1].contains(&ours));
        if !is_server {
            return None;
        }
        let status = std::fs::read_to_string(e.path().join("status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phase_3_passes_on_the_real_postgresql() {
    if Postgres::for_test().is_none() {
        return;
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let run = RunArgs {
        postgres: PostgresMode::Real,
        features: vec![manifest.join("../features/phase3-databases.feature")],
        stack: manifest.join("../fixtures/stack"),
        target: TargetKind::Twin,
        report_dir: PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("postgres-real-reports"),
        profile: Some(manifest.join("../fixtures/acceptance/twin.yaml")),
        seed: Some(1),
        quiet: true,
        ..RunArgs::default()
    };

    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut rss_kib = None;
            while !done.load(Ordering::Relaxed) {
                if let Some(kib) = our_postgres() {
                    rss_kib = rss_kib.max(Some(kib));
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            rss_kib
        })
    };
    let t0 = Instant::now();
    let outcome = stormdrill::run(run).await;
    let took = t0.elapsed();
    done.store(true, Ordering::Relaxed);
    let rss_kib = watcher.join().expect("watcher");

    let outcome = outcome.unwrap_or_else(|e| panic!("the run failed: {}", diag::one_line(&e)));
    for line in outcome.closing_lines() {
        println!("{line}");
    }
    let failed: Vec<String> = outcome
        .summary
        .scenarios
        .iter()
        .flat_map(|sc| {
            let at = format!(
                "{}:{}",
                sc.feature.rsplit('/').next().unwrap_or(""),
                sc.line
            );
            sc.criteria
                .iter()
                .filter(|c| !c.pass)
                .map(|c| format!("{at} {}", c.name))
                .chain(sc.message.iter().map(|m| format!("{at} {m}")))
                .collect::<Vec<_>>()
        })
        .collect();
    println!(
        "phase 3 with --postgres real: {:?} in {took:.1?}; the server's RSS at most {} KiB",
        outcome.verdict,
        rss_kib.map_or("?".into(), |k| k.to_string())
    );
    assert_eq!(
        outcome.verdict,
        Verdict::Go,
        "failed criteria: {failed:?}; reasons: {:?}; error: {:?}",
        outcome.summary.reasons,
        outcome.summary.error
    );
    assert!(
        rss_kib.is_some(),
        "no real postgres server ran on the twin's scratch folder during the run"
    );
}
