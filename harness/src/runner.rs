//! Runs cucumber over feature files: console output tee'd into JUnit and Cucumber JSON
//! files, unknown steps failing the run, and each scenario's outcome collected for
//! summary.json.

use std::{
    any::Any,
    fs::File,
    io,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use cucumber::{
    event::{self, ScenarioFinished},
    gherkin, parser,
    writer::{self, Stats as _},
    Parser, WriterExt as _,
};
use futures::{stream, FutureExt as _, StreamExt as _};

use crate::{
    report::{RunDir, ScenarioRecord},
    steps,
    tags::TagExpr,
    verdict::ScenarioStatus,
    world::World,
};

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("feature path {path} not found")]
    NotFound {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("no .feature files under {path}")]
    NoFeatures { path: PathBuf },
    #[error("cannot create {path}")]
    CreateFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The feature files or folders to run, checked to exist.
#[derive(Clone, Debug)]
pub struct FeatureSet {
    /// (as given, canonical)
    roots: Vec<(PathBuf, PathBuf)>,
    cwd: Option<PathBuf>,
}

impl FeatureSet {
    /// Checks every path exists and every folder holds at least one `.feature` file:
    /// a typo must not turn into an empty, "passing" run.
    pub fn resolve(paths: &[PathBuf]) -> Result<Self, RunnerError> {
        let mut roots = Vec::new();
        for path in paths {
            let canonical = path
                .canonicalize()
                .map_err(|source| RunnerError::NotFound {
                    path: path.clone(),
                    source,
                })?;
            if canonical.is_dir() && !has_feature_files(&canonical) {
                return Err(RunnerError::NoFeatures { path: path.clone() });
            }
            roots.push((path.clone(), canonical));
        }
        Ok(FeatureSet {
            roots,
            cwd: std::env::current_dir().and_then(|d| d.canonicalize()).ok(),
        })
    }

    /// A feature file's path for reports: relative to the working directory when
    /// inside it, else relative to the parent of the root it was found under
    /// (`../features` gives `features/x.feature`).
    pub fn display(&self, path: &Path) -> String {
        if let Some(rel) = self.cwd.as_deref().and_then(|c| path.strip_prefix(c).ok()) {
            return rel.display().to_string();
        }
        self.roots
            .iter()
            .filter(|(_, root)| path.starts_with(root))
            .find_map(|(_, root)| path.strip_prefix(root.parent()?).ok())
            .unwrap_or(path)
            .display()
            .to_string()
    }
}

impl FeatureSet {
    /// Every feature file, canonical, in path order (folders walked recursively).
    pub fn files(&self) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for p in entries.flatten().map(|e| e.path()) {
                if p.is_dir() {
                    walk(&p, out);
                } else if is_feature_file(&p) {
                    out.push(p);
                }
            }
        }
        let mut out = Vec::new();
        for (_, root) in &self.roots {
            if root.is_dir() {
                walk(root, &mut out);
            } else {
                out.push(root.clone());
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

fn is_feature_file(p: &Path) -> bool {
    p.extension()
        .is_some_and(|x| x.eq_ignore_ascii_case("feature"))
}

fn has_feature_files(dir: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let p = e.path();
        if p.is_dir() {
            has_feature_files(&p)
        } else {
            is_feature_file(&p)
        }
    })
}

/// cucumber's own parser, over several paths.
struct Inputs;

type BasicOutput = stream::Iter<std::vec::IntoIter<parser::Result<gherkin::Feature>>>;

impl Parser<Vec<PathBuf>> for Inputs {
    type Cli = cucumber::cli::Empty;
    type Output = stream::Flatten<stream::Iter<std::vec::IntoIter<BasicOutput>>>;

    fn parse(self, input: Vec<PathBuf>, _: Self::Cli) -> Self::Output {
        let per_path: Vec<BasicOutput> = input
            .into_iter()
            .map(|p| parser::Basic::new().parse(p, parser::basic::Cli::default()))
            .collect();
        stream::iter(per_path).flatten()
    }
}

/// Scenario outcomes as they finish; shared so an aborted run still reports them.
#[derive(Clone, Debug, Default)]
pub struct Collector(Arc<Mutex<Vec<ScenarioRecord>>>);

impl Collector {
    fn push(&self, record: ScenarioRecord) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(record);
    }

    pub fn snapshot(&self) -> Vec<ScenarioRecord> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// What cucumber reported besides the scenarios.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunnerStats {
    pub parsing_errors: usize,
    pub hook_errors: usize,
}

/// Runs the features; the World context must be installed by the caller. `quiet`
/// keeps cucumber's console output off the terminal (the report files still get
/// everything).
pub async fn run_features(
    features: &FeatureSet,
    tags: Option<TagExpr>,
    run_dir: &RunDir,
    collector: Collector,
    quiet: bool,
) -> Result<RunnerStats, RunnerError> {
    let create = |path: PathBuf| {
        File::create(&path).map_err(|source| RunnerError::CreateFile { path, source })
    };
    let junit = create(run_dir.junit())?;
    let json = create(run_dir.cucumber_json())?;

    let out: Box<dyn io::Write> = if quiet {
        Box::new(io::sink())
    } else {
        // Around the progress line, which waits draw on stderr in a terminal.
        Box::new(crate::progress::StdoutAroundBar::default())
    };
    let console = writer::Basic::raw(out, writer::Coloring::Auto, 0).summarized();
    let writers = console
        .tee::<World, _>(writer::JUnit::for_tee(junit, 0))
        .tee::<World, _>(writer::Json::for_tee(json))
        .normalized();

    let display = features.clone();
    let inputs: Vec<PathBuf> = features.roots.iter().map(|(_, c)| c.clone()).collect();

    let finished = <World as cucumber::World>::cucumber::<PathBuf>()
        .with_parser(Inputs)
        .with_writer(writers)
        .fail_on_skipped()
        // Scenarios that inject faults run alone (see steps::faults::scenario_type).
        .which_scenario(steps::faults::scenario_type)
        .after(move |feature, rule, scenario, ev, world| {
            let (collector, display) = (collector.clone(), display.clone());
            async move {
                // A scenario's load must not outlive it; stopping also judges what
                // waited for the end of the degraded period.
                let world = match world {
                    Some(w) => {
                        steps::load::finish(w).await;
                        // Also after a failed or panicking step: cucumber keeps the World.
                        steps::faults::finish(w).await;
                        Some(&*w)
                    }
                    None => None,
                };
                collector.push(record(&display, feature, rule, scenario, ev, world));
                // Only now, so the refused scenario is in the report.
                if let Some(w) = world {
                    let faults = &w.context().faults;
                    faults.stop_if_refused();
                    // The run stops on this trigger; holding the runner here keeps the
                    // next scenario from starting (and printing) before it does.
                    if faults.refused().reason().is_some() {
                        std::future::pending::<()>().await;
                    }
                }
            }
            .boxed_local()
        })
        // Our own CLI is parsed already; cucumber must not parse argv again.
        .with_default_cli()
        .filter_run(inputs, move |feature, rule, scenario| {
            tags.as_ref()
                .is_none_or(|t| t.matches(all_tags(feature, rule, scenario)))
        })
        .await;

    Ok(RunnerStats {
        parsing_errors: finished.parsing_errors(),
        hook_errors: finished.hook_errors(),
    })
}

/// A scenario's tags with its feature's and rule's, as `--tags` sees them.
pub fn all_tags<'a>(
    feature: &'a gherkin::Feature,
    rule: Option<&'a gherkin::Rule>,
    scenario: &'a gherkin::Scenario,
) -> impl Iterator<Item = &'a str> + Clone {
    feature
        .tags
        .iter()
        .chain(rule.into_iter().flat_map(|r| &r.tags))
        .chain(&scenario.tags)
        .map(String::as_str)
}

fn record(
    display: &FeatureSet,
    feature: &gherkin::Feature,
    rule: Option<&gherkin::Rule>,
    scenario: &gherkin::Scenario,
    ev: &ScenarioFinished,
    world: Option<&World>,
) -> ScenarioRecord {
    let (status, message) = match ev {
        ScenarioFinished::StepPassed => (ScenarioStatus::Passed, None),
        ScenarioFinished::StepSkipped => (
            ScenarioStatus::Skipped,
            steps::unknown_step_hint(feature, rule, scenario),
        ),
        ScenarioFinished::StepFailed(_, _, err) => {
            (ScenarioStatus::Failed, Some(step_error_text(err)))
        }
        ScenarioFinished::BeforeHookFailed(info) => (
            ScenarioStatus::Failed,
            Some(format!("before hook failed: {}", panic_text(info))),
        ),
    };
    let mut tags: Vec<String> = Vec::new();
    for t in all_tags(feature, rule, scenario) {
        let t = format!("@{t}");
        if !tags.contains(&t) {
            tags.push(t);
        }
    }
    ScenarioRecord {
        feature: feature
            .path
            .as_deref()
            .map_or_else(|| feature.name.clone(), |p| display.display(p)),
        line: scenario.position.line,
        name: scenario.name.clone(),
        tags,
        status,
        measurements: world.map(|w| w.measurements.clone()).unwrap_or_default(),
        criteria: world.map(|w| w.criteria.clone()).unwrap_or_default(),
        message,
        timeline: world.and_then(|w| w.timeline_file.clone()),
        health: world
            .and_then(|w| w.health.as_ref())
            .and_then(|h| h.file())
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned()),
    }
}

fn step_error_text(err: &event::StepError) -> String {
    match err {
        // A step returning Err panics with the error's Display; that text is the message.
        event::StepError::Panic(info) => panic_text(info),
        other => other.to_string(),
    }
}

fn panic_text(info: &Arc<dyn Any + Send>) -> String {
    if let Some(s) = info.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = info.downcast_ref::<&str>() {
        (*s).to_owned()
    } else {
        "panicked with a non-text payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_paths_and_empty_folders_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            FeatureSet::resolve(&[dir.path().join("nope")]),
            Err(RunnerError::NotFound { .. })
        ));
        assert!(matches!(
            FeatureSet::resolve(&[dir.path().to_owned()]),
            Err(RunnerError::NoFeatures { .. })
        ));
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a.FEATURE"), "Feature: a\n").unwrap();
        assert!(FeatureSet::resolve(&[dir.path().to_owned()]).is_ok());
    }

    #[test]
    fn display_paths_relative_to_the_root_parent_outside_cwd() {
        let dir = tempfile::tempdir().unwrap();
        let features = dir.path().join("features");
        std::fs::create_dir(&features).unwrap();
        std::fs::write(features.join("x.feature"), "Feature: x\n").unwrap();
        let set = FeatureSet::resolve(std::slice::from_ref(&features)).unwrap();
        let file = features.canonicalize().unwrap().join("x.feature");
        assert_eq!(set.display(&file), "features/x.feature");
    }
}
