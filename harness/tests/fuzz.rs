//! Hostile input for every parser a user's file reaches ([reliability] item 3): feature
//! files through the pre-flight (Gherkin, step matching, profile keys), acceptance
//! profiles, fault journals (what `stormdrill recover` reads after a crash), target
//! configs, game-day scenarios and the Ceph JSON the probes read. Each must answer with
//! a value or an error, never a panic, and an error must name the file it read.
//!
//! Inputs are the seed files in `tests/fuzz-corpus/<kind>/` mutated at random (bytes
//! cut, inserted, repeated, lines swapped or truncated, as an editor or a crash
//! mid-write leaves them), plus arbitrary text. Property tests (proptest), bounded:
//! `FUZZ_CASES` cases per parser (`PROPTEST_CASES` overrides it for a longer soak).
//! A failing case is shrunk and saved by proptest in `tests/fuzz.proptest-regressions`,
//! which is committed and replayed first on every run: each crash found becomes a
//! regression test.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use serde_json::Value;
use stormdrill::{
    config::Profile, fault::journal::Contents, gameday::scenario::GameDay, preflight, probe::ceph,
    target::power::TargetConfig,
};

/// Cases per parser on each run: ~2 s in all in a debug build.
const FUZZ_CASES: u32 = 300;

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(FUZZ_CASES);
    Config {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/fuzz.proptest-regressions",
        ))),
        ..Config::default()
    }
}

fn corpus(kind: &str) -> Vec<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-corpus")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the fuzz corpus {}: {e}", dir.display()))
        .map(|e| e.expect("a corpus entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seed in {}", dir.display());
    files
        .iter()
        .map(|f| std::fs::read_to_string(f).expect("a readable seed"))
        .collect()
}

/// One edit of a text, at positions given as fractions of its length.
#[derive(Clone, Debug)]
enum Edit {
    Cut(f64, f64),
    Insert(f64, String),
    Repeat(f64, f64),
    SwapLines(f64, f64),
    Truncate(f64),
}

fn edit() -> impl Strategy<Value = Edit> {
    let frac = 0.0..1.0f64;
    // Bytes that mean something to YAML, JSON and Gherkin, and some that mean nothing.
    let noise = prop_oneof![
        "[:\\-#|>{}\\[\\]\"'\n\t @*&!%,]{1,8}",
        any::<String>(),
        Just("\u{0}".to_owned()),
        Just("Scenario:".to_owned()),
        Just("\n    When ".to_owned()),
        Just("1e999".to_owned()),
        Just("-1".to_owned()),
    ];
    prop_oneof![
        (frac.clone(), frac.clone()).prop_map(|(a, b)| Edit::Cut(a, b)),
        (frac.clone(), noise).prop_map(|(a, s)| Edit::Insert(a, s)),
        (frac.clone(), frac.clone()).prop_map(|(a, b)| Edit::Repeat(a, b)),
        (frac.clone(), frac.clone()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        frac.prop_map(Edit::Truncate),
    ]
}

/// A char boundary at fraction `f` of `s`.
fn at(s: &str, f: f64) -> usize {
    let mut i = ((s.len() as f64) * f) as usize;
    while i < s.len() && !s.is_char_boundary(i) {
        i += 1;
    }
    i.min(s.len())
}

fn apply(text: &str, e: &Edit) -> String {
    let span = |a: f64, b: f64| {
        let (x, y) = (at(text, a.min(b)), at(text, a.max(b)));
        // Short spans: a typo, not a rewrite.
        (x, y.min(x + 64).min(text.len()))
    };
    match e {
        Edit::Cut(a, b) => {
            let (x, y) = span(*a, *b);
            let y = (x..=y)
                .rev()
                .find(|i| text.is_char_boundary(*i))
                .unwrap_or(x);
            format!("{}{}", &text[..x], &text[y..])
        }
        Edit::Insert(a, s) => {
            let x = at(text, *a);
            format!("{}{s}{}", &text[..x], &text[x..])
        }
        Edit::Repeat(a, b) => {
            let (x, y) = span(*a, *b);
            let y = (x..=y)
                .rev()
                .find(|i| text.is_char_boundary(*i))
                .unwrap_or(x);
            format!("{}{}{}", &text[..y], &text[x..y], &text[y..])
        }
        Edit::SwapLines(a, b) => {
            let mut lines: Vec<&str> = text.split('\n').collect();
            let n = lines.len();
            let (i, j) = ((*a * n as f64) as usize, (*b * n as f64) as usize);
            lines.swap(i.min(n - 1), j.min(n - 1));
            lines.join("\n")
        }
        Edit::Truncate(a) => text[..at(text, *a)].to_owned(),
    }
}

/// A seed of `kind` with up to 6 edits, or (one case in eight) arbitrary text.
fn mutated(kind: &str) -> impl Strategy<Value = String> {
    let seeds = corpus(kind);
    prop_oneof![
        7 => (0..seeds.len(), proptest::collection::vec(edit(), 0..6)).prop_map(move |(i, edits)| {
            edits.iter().fold(seeds[i].clone(), |t, e| apply(&t, e))
        }),
        1 => any::<String>(),
    ]
}

fn names(err: &dyn std::error::Error, path: &Path) -> bool {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(&s.to_string());
        source = s.source();
    }
    text.contains(&path.display().to_string())
}

#[test]
fn feature_files_through_the_preflight() {
    let profile = Profile::load(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/acceptance/twin.yaml"),
    )
    .expect("the twin's profile");
    proptest!(config(), |(text in mutated("feature"))| {
        let mut problems = Vec::new();
        preflight::check_text("fuzz.feature", &text, Some(&profile), None, &mut problems);
        for p in &problems {
            prop_assert_eq!(p.file.as_str(), "fuzz.feature");
            prop_assert!(!p.message.is_empty());
        }
    });
}

#[test]
fn acceptance_profiles() {
    let path = Path::new("fuzz-profile.yaml");
    proptest!(config(), |(text in mutated("profile"))| {
        match Profile::parse(path, &text) {
            Ok(p) => {
                // Every threshold it lists can be asked for by name.
                for (key, _, _) in p.thresholds() {
                    let _ = p.threshold(&key);
                }
            }
            Err(e) => prop_assert!(names(&e, path), "{e} does not name the file"),
        }
    });
}

#[test]
fn fault_journals() {
    let path = Path::new("fuzz-journal.jsonl");
    proptest!(config(), |(text in mutated("journal"))| {
        match Contents::parse(path, &text) {
            Ok(c) => {
                let _ = c.pending();
            }
            Err(e) => prop_assert!(names(&e, path), "{e} does not name the file"),
        }
    });
}

#[test]
fn target_configs() {
    let path = Path::new("fuzz-target.yaml");
    proptest!(config(), |(text in mutated("target"))| {
        match TargetConfig::parse(path, &text) {
            Ok(c) => {
                if let Some(power) = &c.power {
                    let _ = power.command("worker-1", false);
                    let _ = power.variables();
                }
            }
            Err(e) => prop_assert!(names(&e, path), "{e} does not name the file"),
        }
    });
}

#[test]
fn gameday_scenarios() {
    let path = Path::new("fuzz-gameday.yaml");
    proptest!(config(), |(text in mutated("gameday"))| {
        if let Err(e) = GameDay::parse(path, &text) {
            prop_assert!(names(&e, path), "{e} does not name the file");
        }
    });
}

/// The probes read `ceph ... -f json` from a toolbox that may be any Ceph version:
/// any JSON shape is an answer or an error.
#[test]
fn ceph_json() {
    proptest!(config(), |(text in mutated("ceph"))| {
        if let Ok(v) = serde_json::from_str::<Value>(&text) {
            let _ = ceph::CephStatus::parse(&v).map(|s| (s.pgs_total(), s.describe_checks(), s.describe_unclean()));
            let _ = ceph::parse_pools(&v);
            let _ = ceph::parse_osd_tree(&v);
        }
    });
}
