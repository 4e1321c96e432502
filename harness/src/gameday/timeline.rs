//! `timeline.md`: the wall-clock time of every action and observation of a game day,
//! for the post-mortem. Entries are kept in memory (bounded) and written at the end,
//! also after an abort.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
};

use chrono::{DateTime, Utc};

pub const TIMELINE_MD: &str = "timeline.md";
/// Entries kept; a lane flapping for hours must not grow without bound.
pub const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum TimelineMdError {
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The harness did something to the cluster (or to the load).
    Action,
    /// Something was seen: a health change, a steady state, a figure.
    Observation,
    /// The operator was asked, or answered.
    Operator,
    /// The game day stopped before its end.
    Abort,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Action => "action",
            Kind::Observation => "observation",
            Kind::Operator => "operator",
            Kind::Abort => "abort",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub at: DateTime<Utc>,
    pub kind: Kind,
    pub what: String,
}

#[derive(Debug, Default)]
struct Inner {
    entries: Vec<Entry>,
    dropped: usize,
    /// Recorded only, not printed (a game day run from a feature).
    silent: bool,
}

/// Shared between the game day and its observation printer.
#[derive(Clone, Debug, Default)]
pub struct Timeline(Arc<Mutex<Inner>>);

impl Timeline {
    /// A timeline whose entries are not printed as they happen.
    pub fn silent() -> Timeline {
        let t = Timeline::default();
        t.0.lock().unwrap_or_else(|e| e.into_inner()).silent = true;
        t
    }

    pub fn is_silent(&self) -> bool {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).silent
    }

    pub fn record(&self, kind: Kind, what: impl Into<String>) -> Entry {
        let e = Entry {
            at: Utc::now(),
            kind,
            what: what.into(),
        };
        let mut i = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if i.entries.len() < MAX_ENTRIES {
            i.entries.push(e.clone());
        } else {
            i.dropped += 1;
        }
        e
    }

    pub fn entries(&self) -> Vec<Entry> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entries
            .clone()
    }

    /// The Markdown: a heading, then one table row per entry with UTC time and the
    /// seconds since the first entry.
    pub fn render(&self, title: &str) -> String {
        let i = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = format!("# Game day timeline: {title}\n\n");
        let Some(first) = i.entries.first().map(|e| e.at) else {
            out.push_str("Nothing happened.\n");
            return out;
        };
        let _ = writeln!(
            out,
            "Started {} UTC. Times are wall-clock (UTC); `+s` is seconds since the start.\n",
            first.format("%Y-%m-%d %H:%M:%S")
        );
        out.push_str("| time (UTC) | +s | kind | what |\n|---|---:|---|---|\n");
        for e in &i.entries {
            let _ = writeln!(
                out,
                "| {} | {:.1} | {} | {} |",
                e.at.format("%H:%M:%S%.3f"),
                (e.at - first).num_milliseconds() as f64 / 1000.0,
                e.kind.as_str(),
                cell(&e.what)
            );
        }
        if i.dropped > 0 {
            let _ = writeln!(
                out,
                "\n{} later entries were not kept (limit {MAX_ENTRIES}).",
                i.dropped
            );
        }
        out
    }

    pub fn write(&self, dir: &Path, title: &str) -> Result<PathBuf, TimelineMdError> {
        let path = dir.join(TIMELINE_MD);
        std::fs::write(&path, self.render(title)).map_err(|source| TimelineMdError::Write {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    }
}

/// A table cell: `|` escaped, one line.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_render_as_a_table_with_offsets() {
        let t = Timeline::default();
        assert!(t.render("x").contains("Nothing happened."));
        t.record(Kind::Operator, "asked: apply step 1? | y/N");
        t.record(Kind::Action, "applied step 1\nnext line");
        let md = t.render("pod-kill");
        assert!(md.starts_with("# Game day timeline: pod-kill\n"), "{md}");
        assert!(md.contains("| time (UTC) | +s | kind | what |"));
        let rows: Vec<&str> = md
            .lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| time"))
            .collect();
        assert_eq!(rows.len(), 2);
        assert!(
            rows[0].contains("| 0.0 | operator | asked: apply step 1? \\| y/N |"),
            "{}",
            rows[0]
        );
        assert!(
            rows[1].ends_with("| action | applied step 1 next line |"),
            "{}",
            rows[1]
        );
        let dir = tempfile::tempdir().unwrap();
        let p = t.write(dir.path(), "pod-kill").unwrap();
        assert_eq!(std::fs::read_to_string(p).unwrap(), md);
    }
}
