//! `stormdrill gameday` as an operator uses it, against the embedded twin: a `--yes`
//! run completes; a "no" at a confirmation and a Ctrl-C (SIGINT to the process) both
//! revert what was injected and exit 3. Only 127.0.0.1 is ever talked to (the twin);
//! every wait is bounded.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{mpsc, Mutex},
    time::{Duration, Instant},
};

/// One game day at a time: each starts a twin, and the machine has 2 cores.
static SERIAL: Mutex<()> = Mutex::new(());

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    manifest().join("tests/fixtures/gameday").join(name)
}

/// Starts `stormdrill gameday` on a fixture scenario with the test profile; stdout
/// lines arrive on the channel as they are printed.
fn gameday(scenario: &str, extra: &[&str], reports: &Path) -> (Child, mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_stormdrill"))
        .current_dir(manifest().join(".."))
        .arg("gameday")
        .arg(fixture(scenario))
        .args(["--run-id", "g", "--seed", "7", "--profile"])
        .arg(fixture("profile.yaml"))
        .arg("--report-dir")
        .arg(reports)
        .args(extra)
        .env_remove("RUST_LOG")
        .env("CI", "true")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("stormdrill runs");
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Reads lines until one contains `needle` (returns everything read), within `within`.
fn read_until(
    rx: &mpsc::Receiver<String>,
    needle: &str,
    within: Duration,
    seen: &mut Vec<String>,
) -> bool {
    let deadline = Instant::now() + within;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(l) => {
                let hit = l.contains(needle);
                seen.push(l);
                if hit {
                    return true;
                }
            }
            Err(_) => return false,
        }
    }
    false
}

/// Waits for the exit code (killing the child after `within`), draining stdout.
fn exit_code(
    mut child: Child,
    rx: &mpsc::Receiver<String>,
    seen: &mut Vec<String>,
    within: Duration,
) -> Option<i32> {
    let deadline = Instant::now() + within;
    loop {
        while let Ok(l) = rx.try_recv() {
            seen.push(l);
        }
        if let Some(status) = child.try_wait().unwrap() {
            // The reader thread may still hold the last lines.
            while let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
                seen.push(l);
            }
            return status.code();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn journal(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("journal.jsonl"))
        .expect("journal.jsonl")
        .lines()
        .map(|l| serde_json::from_str(l).expect("journal line"))
        .collect()
}

/// Every applied fault has a `done` line (reverted), with its outcome.
fn applied_and_done(lines: &[serde_json::Value]) -> Vec<(String, String)> {
    lines
        .iter()
        .filter(|l| l["op"] == "apply")
        .map(|a| {
            let done = lines
                .iter()
                .find(|d| d["op"] == "done" && d["seq"] == a["seq"])
                .map_or("NOT DONE".to_owned(), |d| {
                    d["outcome"].as_str().unwrap_or("?").to_owned()
                });
            (a["fault"].as_str().unwrap_or("?").to_owned(), done)
        })
        .collect()
}

#[test]
fn a_confirmed_game_day_completes_and_writes_its_timeline() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let reports = tempfile::tempdir().unwrap();
    let (child, rx) = gameday("quick.yaml", &["--yes"], reports.path());
    let mut seen = Vec::new();
    let code = exit_code(child, &rx, &mut seen, Duration::from_secs(400));
    let out = seen.join("\n");
    assert_eq!(code, Some(0), "{out}");
    // The plan first, then the confirmation, the action and the observations.
    let plan = out
        .find("1. pod-kill [destructive]: kill 1 pod(s) of deployment openalex/fastapi")
        .expect(&out);
    let applied = out
        .find("applied: delete 1 pod(s) in openalex: fastapi-")
        .expect(&out);
    assert!(plan < applied, "{out}");
    assert!(out.contains("yes (--yes)"), "{out}");
    assert!(
        out.contains("observation: pods openalex: 2/3 Ready")
            || out.contains("Ready; not Ready: openalex/fastapi"),
        "health changes are shown live:\n{out}"
    );
    assert!(out.contains("recovered, RTO"), "{out}");
    assert!(out.contains("verdict: go"), "{out}");

    let run = reports.path().join("g");
    let md = std::fs::read_to_string(run.join("timeline.md")).unwrap();
    assert!(md.starts_with("# Game day timeline: quick"), "{md}");
    for needle in [
        "| operator | asked: step 1/2 pod-kill",
        "| action | step 1/2 pod-kill: applied",
        "| observation | pods openalex:",
        "recovered, RTO",
    ] {
        assert!(md.contains(needle), "timeline.md lacks {needle}:\n{md}");
    }
    assert_eq!(
        applied_and_done(&journal(&run)),
        [("pod-kill".to_owned(), "nothing".to_owned())]
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["verdict"], "go");
    let s = &summary["scenarios"][0];
    assert!(s["measurements"]["rto_s"].as_f64().is_some(), "{s}");
    assert_eq!(s["timeline"], "timeline.csv");
    assert_eq!(s["health"], "health.csv");
    let html = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(
        html.contains("pods openalex") && html.contains("fault (t0)"),
        "lanes and markers in report.html"
    );
    assert!(std::fs::read_to_string(run.join("metrics.prom"))
        .unwrap()
        .contains("stormdrill_rto_seconds{"));
}

#[test]
fn a_no_at_a_confirmation_reverts_and_exits_3() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let reports = tempfile::tempdir().unwrap();
    let (mut child, rx) = gameday("outage.yaml", &[], reports.path());
    let mut stdin = child.stdin.take().unwrap();
    let mut seen = Vec::new();
    assert!(
        read_until(
            &rx,
            "step 1/4 workload-outage",
            Duration::from_secs(300),
            &mut seen
        ),
        "{}",
        seen.join("\n")
    );
    stdin.write_all(b"y\n").unwrap();
    assert!(
        read_until(&rx, "step 2/4 pod-kill", Duration::from_secs(60), &mut seen),
        "{}",
        seen.join("\n")
    );
    stdin.write_all(b"n\n").unwrap();
    let code = exit_code(child, &rx, &mut seen, Duration::from_secs(120));
    let out = seen.join("\n");
    assert_eq!(code, Some(3), "{out}");
    assert!(
        out.contains("aborting: the operator did not confirm step 2/4 pod-kill"),
        "{out}"
    );
    assert!(out.contains("reverted #1 workload-outage: scale Deployment openalex/fastapi back to 3 replicas (restored"), "{out}");
    let run = reports.path().join("g");
    // Only the confirmed fault was applied, and it was put back.
    assert_eq!(
        applied_and_done(&journal(&run)),
        [("workload-outage".to_owned(), "restored".to_owned())]
    );
    let md = std::fs::read_to_string(run.join("timeline.md")).unwrap();
    assert!(md.contains("| operator | answered \"n\" |"), "{md}");
    assert!(
        md.contains("| abort | aborting: the operator did not confirm"),
        "{md}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["verdict"], "aborted");
}

#[test]
fn ctrl_c_reverts_everything_and_exits_3() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let reports = tempfile::tempdir().unwrap();
    let (child, rx) = gameday("outage.yaml", &["--yes"], reports.path());
    let mut seen = Vec::new();
    assert!(
        read_until(
            &rx,
            "step 3/4 wait: watching",
            Duration::from_secs(300),
            &mut seen
        ),
        "{}",
        seen.join("\n")
    );
    // SIGINT, as Ctrl-C in a terminal sends it.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(rc, 0);
    let code = exit_code(child, &rx, &mut seen, Duration::from_secs(120));
    let out = seen.join("\n");
    assert_eq!(code, Some(3), "{out}");
    assert!(
        out.contains("aborting: interrupted (Ctrl-C or SIGTERM)"),
        "{out}"
    );
    let run = reports.path().join("g");
    let done = applied_and_done(&journal(&run));
    assert_eq!(
        done,
        [
            ("workload-outage".to_owned(), "restored".to_owned()),
            ("pod-kill".to_owned(), "nothing".to_owned())
        ],
        "{out}"
    );
    let md = std::fs::read_to_string(run.join("timeline.md")).unwrap();
    assert!(md.contains("| abort | aborting: interrupted"), "{md}");
    assert!(md.contains("reverted #1 workload-outage"), "{md}");
}

#[test]
fn a_feature_runs_a_scenario_file_by_name() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let reports = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_stormdrill"))
        .current_dir(manifest())
        .args(["run", "--run-id", "f", "--seed", "7", "--profile"])
        .arg(fixture("profile.yaml"))
        .arg("--report-dir")
        .arg(reports.path())
        .arg("--stack")
        .arg(manifest().join("../fixtures/stack"))
        .arg(fixture("from-feature.feature"))
        .env_remove("RUST_LOG")
        .env("CI", "true")
        .stdin(Stdio::null())
        .output()
        .expect("stormdrill runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let run = reports.path().join("f");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("summary.json")).unwrap()).unwrap();
    let s = &summary["scenarios"][0];
    let names: Vec<&str> = s["criteria"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    for n in ["steady_state_windows", "rto_s", "error_rate_during_pct"] {
        assert!(names.contains(&n), "{n} not judged: {names:?}");
    }
    let md = std::fs::read_to_string(run.join("gameday-quick.md")).unwrap();
    assert!(md.contains("| action | step 1/2 pod-kill: applied"), "{md}");
    // The runner's after hook reverted (marked done) what the scenario injected.
    assert_eq!(
        applied_and_done(&journal(&run)),
        [("pod-kill".to_owned(), "nothing".to_owned())]
    );
}
