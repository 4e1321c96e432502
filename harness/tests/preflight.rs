//! Bad inputs and how the `stormdrill` binary meets them: each row is an input a
//! reviewer (or the pre-flight's own list) found, the command, its exit code and what
//! its output must and must not say. Exit 2 rows must also leave no report folder:
//! the problem was found before anything was started.

mod common;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

/// One bad input.
struct Row {
    name: &'static str,
    /// Files written into the row's folder: (name, content).
    files: &'static [(&'static str, &'static str)],
    /// Arguments; `{dir}` is the row's folder, `{kubeconfig}` a served twin's.
    args: &'static [&'static str],
    exit: i32,
    says: &'static [&'static str],
    never: &'static [&'static str],
    /// Nothing may be started: no report folder, and quick.
    preflight: bool,
}

const MOON: &str = "Feature: moon\n  Scenario: cheese\n    Given the moon is made of cheese\n";

const ROWS: &[Row] = &[
    Row {
        name: "empty Given and a garbled keyword: no steps is an error, not a go",
        files: &[(
            "empty.feature",
            "Feature: empty\n  Scenario: nothing\n    Given\n    Gvien the cluster is reachable\n",
        )],
        args: &["run", "{dir}/empty.feature", "--report-dir", "{dir}/reports"],
        exit: 2,
        says: &[
            "empty.feature:2: scenario `nothing` has no steps",
            "empty.feature:3: `Given` without a step",
            "empty.feature:4: `Gvien` is not a step keyword",
            "did you mean `Given`?",
        ],
        never: &["verdict: go", "panicked"],
        preflight: true,
    },
    Row {
        name: "unknown step: found before the stack is deployed, suggestions by shared words",
        files: &[("moon.feature", MOON)],
        args: &["run", "{dir}/moon.feature", "--report-dir", "{dir}/reports"],
        exit: 2,
        says: &[
            "moon.feature:3: unknown step `Given the moon is made of cheese`",
            "no known step shares a word with it; `stormdrill steps` lists them",
        ],
        never: &["When the pod of OSD 1 is deleted", "target: twin"],
        preflight: true,
    },
    Row {
        name: "unknown step with a near miss names the closest known step",
        files: &[(
            "nodes.feature",
            "Feature: n\n  Scenario: s\n    Then every nodes are Ready\n",
        )],
        args: &["check", "{dir}/nodes.feature"],
        exit: 2,
        says: &["nodes.feature:3: unknown step", "closest known step: `Then every node is Ready`"],
        never: &[],
        preflight: true,
    },
    Row {
        name: "a profile key the profile lacks",
        files: &[(
            "key.feature",
            "Feature: k\n  Scenario: s\n    Then every OSD is up and in within the profile's chaos.osd.recovery_sec\n",
        )],
        args: &["check", "{dir}/key.feature", "--profile", "../fixtures/acceptance/kind.yaml"],
        exit: 2,
        says: &[
            "key.feature:3: threshold `chaos.osd.recovery_sec` is not in the acceptance profile ../fixtures/acceptance/kind.yaml",
            "did you mean chaos.osd.recovery_s",
        ],
        never: &[],
        preflight: true,
    },
    Row {
        name: "a profile key without a profile (a cluster has no default one)",
        files: &[(
            "key.feature",
            "Feature: k\n  Scenario: s\n    Then every OSD is up and in within the profile's chaos.osd.recovery_s\n",
        )],
        args: &["check", "{dir}/key.feature", "--target", "cluster"],
        exit: 2,
        says: &["key.feature:3: threshold `chaos.osd.recovery_s` needs an acceptance profile: pass --profile"],
        never: &[],
        preflight: true,
    },
    Row {
        name: "a game-day scenario file that does not exist",
        files: &[(
            "gameday.feature",
            "Feature: g\n  Scenario: s\n    When the game-day scenario \"no-such-scenario\" is run\n",
        )],
        args: &["run", "{dir}/gameday.feature", "--report-dir", "{dir}/reports"],
        exit: 2,
        says: &["gameday.feature:3: ", "scenarios/no-such-scenario.yaml not found"],
        never: &[],
        preflight: true,
    },
    Row {
        name: "a game-day scenario file that does not load",
        files: &[
            ("bad.yaml", "steps:\n  - action: pod-kill\n    deploymnt: x\n    namespace: y\n"),
            (
                "gameday.feature",
                "Feature: g\n  Scenario: s\n    When the game-day scenario \"{dir}/bad.yaml\" is run\n",
            ),
        ],
        args: &["check", "{dir}/gameday.feature"],
        exit: 2,
        says: &[
            "gameday.feature:3: invalid game-day scenario",
            "bad.yaml:2:3: steps: unknown field `deploymnt`",
        ],
        never: &[],
        preflight: true,
    },
    Row {
        name: "a syntax error names its line",
        files: &[(
            "broken.feature",
            "Feature: b\n  Scenario: s\n    Given the cluster is reachable\n  Examples\n",
        )],
        args: &["run", "{dir}/broken.feature", "--report-dir", "{dir}/reports"],
        exit: 2,
        says: &["broken.feature:4: not valid Gherkin at `Examples`"],
        never: &[],
        preflight: true,
    },
    Row {
        name: "a step outside any scenario",
        files: &[(
            "outside.feature",
            "Feature: o\n  Given the cluster is reachable\n  Scenario: s\n    Then every node is Ready\n",
        )],
        args: &["check", "{dir}/outside.feature"],
        exit: 2,
        says: &["outside.feature:2: a step outside any `Scenario:`"],
        never: &[],
        preflight: true,
    },
    Row {
        name: "every problem of every file at once, then the count",
        files: &[
            ("a.feature", MOON),
            ("b.feature", "Feature: b\n  Scenario: s\n"),
        ],
        args: &["check", "{dir}"],
        exit: 2,
        says: &[
            "/a.feature:3: unknown step",
            "b.feature:2: scenario `s` has no steps",
            "2 problem(s) found before anything was started",
        ],
        never: &[],
        preflight: true,
    },
    Row {
        name: "a game day whose scenario file does not exist starts nothing",
        files: &[],
        args: &["gameday", "{dir}/nope.yaml", "--yes", "--report-dir", "{dir}/reports"],
        exit: 2,
        says: &["nope.yaml: No such file"],
        never: &["panicked"],
        preflight: true,
    },
    Row {
        name: "recover parses the journal before it looks for a kubeconfig",
        files: &[("journal.jsonl", "{garbage\n")],
        args: &["recover", "{dir}/journal.jsonl", "--kubeconfig", "{dir}/no-such-kubeconfig"],
        exit: 2,
        says: &["journal.jsonl:1: not a journal line"],
        never: &["kubeconfig"],
        preflight: true,
    },
    Row {
        name: "a run that judges no criteria is not go",
        files: &[(
            "reach.feature",
            "Feature: r\n  Scenario: s\n    Given the cluster is reachable\n",
        )],
        args: &["run", "{dir}/reach.feature", "--report-dir", "{dir}/reports"],
        exit: 1,
        says: &["no criteria were judged: a go needs at least one", "verdict: no-go"],
        never: &["verdict: go"],
        preflight: false,
    },
    Row {
        name: "a guard refusal on a cluster that did not opt in: exit 2, the rest skipped",
        files: &[(
            "guard.feature",
            "@destructive\nFeature: g\n  Scenario: drained\n    Given the cluster is reachable\n    \
             When node \"dirqual1\" is drained\n  Scenario: later\n    Then every node is Ready\n",
        )],
        args: &[
            "run",
            "--target",
            "cluster",
            "--kubeconfig",
            "{kubeconfig}",
            "{dir}/guard.feature",
            "--report-dir",
            "{dir}/reports",
        ],
        exit: 2,
        says: &[
            "a destructive fault was refused, the rest of the run was skipped",
            "pass --allow-destructive",
            "verdict: error",
        ],
        never: &["panicked", "criteria passed", "later"],
        preflight: false,
    },
];

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn stormdrill(cwd: &Path, args: &[String]) -> (Option<i32>, String, Duration) {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_stormdrill"))
        .current_dir(cwd)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("stormdrill runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    (out.status.code(), text, started.elapsed())
}

fn fill(text: &str, dir: &Path, kubeconfig: Option<&Path>) -> String {
    let mut t = text.replace("{dir}", &dir.display().to_string());
    if let Some(k) = kubeconfig {
        t = t.replace("{kubeconfig}", &k.display().to_string());
    }
    t
}

#[test]
fn bad_inputs() {
    // Only the guard row needs a cluster: a bare twin, started once.
    let twin = common::kubectl::serve();
    let mut failures = Vec::new();
    for row in ROWS {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in row.files {
            std::fs::write(dir.path().join(name), fill(content, dir.path(), None)).unwrap();
        }
        let args: Vec<String> = row
            .args
            .iter()
            .map(|a| fill(a, dir.path(), Some(&twin.kubeconfig)))
            .collect();
        let (code, text, _took) = stormdrill(&manifest(), &args);
        let mut wrong = Vec::new();
        if code != Some(row.exit) {
            wrong.push(format!("exit {code:?}, not {}", row.exit));
        }
        wrong.extend(
            row.says
                .iter()
                .map(|s| fill(s, dir.path(), None))
                .filter(|s| !text.contains(s.as_str()))
                .map(|s| format!("does not say {s:?}")),
        );
        wrong.extend(
            row.never
                .iter()
                .filter(|s| text.contains(*s))
                .map(|s| format!("says {s:?}")),
        );
        if row.preflight && dir.path().join("reports").exists() {
            wrong.push("left a report folder: something was started".into());
        }
        if !wrong.is_empty() {
            failures.push(format!("{}: {}\n{text}", row.name, wrong.join("; ")));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_shipped_features_pass_the_check() {
    // From the repository's root, as people run it: the twin's profile is the default.
    let (code, text, took) = stormdrill(&manifest().join(".."), &["check".into()]);
    assert_eq!(code, Some(0), "{text}");
    assert!(
        text.starts_with("ok: ") && text.contains(" feature file(s)"),
        "{text}"
    );
    // Its time is printed, not asserted (machines are noisy): ~0.1 s in a debug build.
    eprintln!("stormdrill check (features/): {took:?}: {text}");
}
