//! The fault journal, `reports/<run>/journal.jsonl`: write-ahead, append-only JSON
//! lines, each fsync'd before the call returns.
//!
//! - `run`: who wrote it (run id, target, API server), once, first.
//! - `apply`: a fault's revert record, written *before* the fault is applied, so a
//!   process killed at any point leaves behind what to undo.
//! - `update`: a refined revert record for an entry (superseding its `apply`).
//! - `done`: the entry was reverted (or found reverted); replays skip it.
//!
//! Appending only (never rewriting) keeps every state crash-safe: a torn last line is
//! ignored when reading, and is simply followed by the next append.

use std::{
    collections::BTreeMap,
    fs::{File, OpenOptions},
    io::{self, Write as _},
    path::{Path, PathBuf},
    sync::Mutex,
};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{FaultKind, Revert, Reverted};

pub const JOURNAL_FILE: &str = "journal.jsonl";

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot write journal {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot read journal {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("journal {path}:{line}: not a journal line")]
    Parse {
        path: PathBuf,
        line: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("no fault journal ({JOURNAL_FILE}) in any run folder under {0}")]
    NoneFound(PathBuf),
}

/// Who wrote the journal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunHeader {
    pub run_id: String,
    /// `twin`, `cluster`.
    pub target: String,
    /// The API server URL the faults were applied through.
    pub server: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Line {
    Run {
        at: DateTime<Utc>,
        #[serde(flatten)]
        header: RunHeader,
    },
    Apply {
        seq: u64,
        at: DateTime<Utc>,
        fault: FaultKind,
        action: String,
        revert: Revert,
    },
    Update {
        seq: u64,
        at: DateTime<Utc>,
        revert: Revert,
    },
    Done {
        seq: u64,
        at: DateTime<Utc>,
        outcome: Reverted,
        /// `scenario`, `run-end`, `signal`, `recover`, a step.
        by: String,
    },
}

/// One fault as the journal knows it.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub fault: FaultKind,
    pub action: String,
    pub revert: Revert,
    pub done: bool,
}

/// A journal read back.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Contents {
    pub header: Option<RunHeader>,
    /// In seq order.
    pub entries: Vec<Entry>,
    /// Lines cut short by a crash mid-append, ignored.
    pub torn: usize,
    /// The file ends inside such a line (the next append must start a new one).
    pub ends_mid_line: bool,
}

impl Contents {
    pub fn parse(path: &Path, text: &str) -> Result<Contents, JournalError> {
        let mut out = Contents::default();
        let mut by_seq: BTreeMap<u64, Entry> = BTreeMap::new();
        out.ends_mid_line = !text.is_empty() && !text.ends_with('\n');
        for (i, raw) in text.lines().enumerate() {
            if raw.trim().is_empty() {
                continue;
            }
            let line: Line = match serde_json::from_str(raw) {
                Ok(l) => l,
                // A crash mid-append leaves a truncated line; anything else is damage.
                Err(e) if e.is_eof() => {
                    out.torn += 1;
                    continue;
                }
                Err(source) => {
                    return Err(JournalError::Parse {
                        path: path.to_owned(),
                        line: i + 1,
                        source,
                    })
                }
            };
            match line {
                Line::Run { header, .. } => out.header = out.header.or(Some(header)),
                Line::Apply {
                    seq,
                    at,
                    fault,
                    action,
                    revert,
                } => {
                    by_seq.insert(
                        seq,
                        Entry {
                            seq,
                            at,
                            fault,
                            action,
                            revert,
                            done: false,
                        },
                    );
                }
                Line::Update { seq, revert, .. } => {
                    if let Some(e) = by_seq.get_mut(&seq) {
                        e.revert = revert;
                    }
                }
                Line::Done { seq, .. } => {
                    if let Some(e) = by_seq.get_mut(&seq) {
                        e.done = true;
                    }
                }
            }
        }
        out.entries = by_seq.into_values().collect();
        Ok(out)
    }

    pub fn read(path: &Path) -> Result<Contents, JournalError> {
        let text = std::fs::read_to_string(path).map_err(|source| JournalError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    /// Entries not marked done, newest first: the order to undo them in.
    pub fn pending(&self) -> Vec<&Entry> {
        let mut p: Vec<&Entry> = self.entries.iter().filter(|e| !e.done).collect();
        p.reverse();
        p
    }
}

/// An open journal. The file is created by the first fault, so runs without faults
/// leave none behind.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    header: RunHeader,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    next_seq: u64,
    started: bool,
}

impl Journal {
    /// A journal for a new run at `path` (not created until the first append).
    pub fn new(path: PathBuf, header: RunHeader) -> Journal {
        Journal {
            path,
            header,
            state: Mutex::new(State {
                next_seq: 1,
                started: false,
            }),
        }
    }

    /// An existing journal, to append `done` lines to (recover).
    pub fn reopen(path: &Path) -> Result<(Journal, Contents), JournalError> {
        let contents = Contents::read(path)?;
        let next_seq = contents.entries.iter().map(|e| e.seq).max().unwrap_or(0) + 1;
        let header = contents.header.clone().unwrap_or(RunHeader {
            run_id: String::new(),
            target: String::new(),
            server: String::new(),
        });
        let journal = Journal {
            path: path.to_owned(),
            header,
            state: Mutex::new(State {
                next_seq,
                started: true,
            }),
        };
        // A torn last line gets its line end, so the next append starts a line of its own.
        if contents.ends_mid_line {
            journal.write_raw("\n")?;
        }
        Ok((journal, contents))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn header(&self) -> &RunHeader {
        &self.header
    }

    /// Whether any line was written (the file exists).
    pub fn started(&self) -> bool {
        self.lock().started
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends a revert record ahead of its fault; returns its seq.
    pub fn append_apply(
        &self,
        fault: FaultKind,
        action: &str,
        revert: &Revert,
    ) -> Result<u64, JournalError> {
        let mut state = self.lock();
        let mut text = String::new();
        if !state.started {
            text.push_str(&to_line(&Line::Run {
                at: Utc::now(),
                header: self.header.clone(),
            }));
        }
        let seq = state.next_seq;
        text.push_str(&to_line(&Line::Apply {
            seq,
            at: Utc::now(),
            fault,
            action: action.to_owned(),
            revert: revert.clone(),
        }));
        self.write_raw(&text)?;
        state.started = true;
        state.next_seq += 1;
        Ok(seq)
    }

    pub fn append_update(&self, seq: u64, revert: &Revert) -> Result<(), JournalError> {
        let _state = self.lock();
        self.write_raw(&to_line(&Line::Update {
            seq,
            at: Utc::now(),
            revert: revert.clone(),
        }))
    }

    pub fn mark_done(&self, seq: u64, outcome: Reverted, by: &str) -> Result<(), JournalError> {
        let _state = self.lock();
        self.write_raw(&to_line(&Line::Done {
            seq,
            at: Utc::now(),
            outcome,
            by: by.to_owned(),
        }))
    }

    /// The journal's current contents (after this process's appends).
    pub fn contents(&self) -> Result<Contents, JournalError> {
        let _state = self.lock();
        if !self.path.exists() {
            return Ok(Contents::default());
        }
        Contents::read(&self.path)
    }

    /// One `write` of whole lines, then fsync of the file (and, when it was just
    /// created, of its folder, so the file itself survives a crash).
    fn write_raw(&self, text: &str) -> Result<(), JournalError> {
        let err = |source| JournalError::Write {
            path: self.path.clone(),
            source,
        };
        let created = !self.path.exists();
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(err)?;
        file.write_all(text.as_bytes()).map_err(err)?;
        file.sync_data().map_err(err)?;
        if created {
            if let Some(dir) = self.path.parent() {
                // Best effort: not every filesystem lets a folder be fsync'd.
                let _ = File::open(dir).and_then(|d| d.sync_all());
            }
        }
        Ok(())
    }
}

fn to_line(line: &Line) -> String {
    let mut s = serde_json::to_string(line).expect("journal lines serialise");
    s.push('\n');
    s
}

/// The most recently written journal among `<report_dir>/*/journal.jsonl`.
pub fn latest(report_dir: &Path) -> Result<PathBuf, JournalError> {
    let entries = std::fs::read_dir(report_dir).map_err(|source| JournalError::Read {
        path: report_dir.to_owned(),
        source,
    })?;
    entries
        .flatten()
        .map(|e| e.path().join(JOURNAL_FILE))
        .filter_map(|p| {
            let modified = p.metadata().and_then(|m| m.modified()).ok()?;
            Some((modified, p))
        })
        .max()
        .map(|(_, p)| p)
        .ok_or_else(|| JournalError::NoneFound(report_dir.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::{power::PowerOn, scale};

    fn header() -> RunHeader {
        RunHeader {
            run_id: "r1".into(),
            target: "cluster".into(),
            server: "https://127.0.0.1:6443".into(),
        }
    }

    fn scale_back(replicas: i32) -> Revert {
        Revert::ScaleBack(scale::ScaleBack {
            workload: scale::Workload {
                kind: scale::WorkloadKind::Deployment,
                namespace: "openalex".into(),
                name: "fastapi".into(),
            },
            replicas,
        })
    }

    #[test]
    fn appends_then_marks_done_and_replays_pending_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(JOURNAL_FILE);
        let j = Journal::new(path.clone(), header());
        assert!(!path.exists(), "created lazily");
        let a = j
            .append_apply(FaultKind::WorkloadOutage, "scale", &scale_back(3))
            .unwrap();
        let power = Revert::PowerOn(PowerOn {
            node: "dirqual2".into(),
        });
        let b = j.append_apply(FaultKind::NodePower, "off", &power).unwrap();
        let c = j
            .append_apply(FaultKind::WorkloadOutage, "scale", &scale_back(1))
            .unwrap();
        assert_eq!((a, b, c), (1, 2, 3));
        j.append_update(c, &scale_back(2)).unwrap();
        j.mark_done(a, Reverted::Restored, "scenario").unwrap();

        let contents = Contents::read(&path).unwrap();
        assert_eq!(contents.header, Some(header()));
        let pending: Vec<u64> = contents.pending().iter().map(|e| e.seq).collect();
        assert_eq!(pending, [3, 2]);
        assert_eq!(contents.pending()[0].revert, scale_back(2));

        // Reopened (as recover does), seqs continue and done lines stick.
        let (again, _) = Journal::reopen(&path).unwrap();
        again.mark_done(3, Reverted::Gone, "recover").unwrap();
        again.mark_done(2, Reverted::Restored, "recover").unwrap();
        assert!(Contents::read(&path).unwrap().pending().is_empty());
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.lines()
                .filter(|l| l.contains("\"op\":\"run\""))
                .count(),
            1
        );
    }

    #[test]
    fn a_torn_last_line_is_ignored_and_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(JOURNAL_FILE);
        let j = Journal::new(path.clone(), header());
        j.append_apply(FaultKind::WorkloadOutage, "scale", &scale_back(3))
            .unwrap();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"op\":\"done\",\"se").unwrap();
        drop(f);
        let c = Contents::read(&path).unwrap();
        assert!(c.ends_mid_line && c.torn == 1);
        assert_eq!(c.pending().len(), 1);
        let (again, _) = Journal::reopen(&path).unwrap();
        again.mark_done(1, Reverted::Restored, "recover").unwrap();
        let c = Contents::read(&path).unwrap();
        assert!(c.pending().is_empty() && !c.ends_mid_line && c.torn == 1);

        // A bad line in the middle is an error, not silently skipped.
        std::fs::write(&path, "nonsense\n{}\n").unwrap();
        assert!(matches!(
            Contents::read(&path),
            Err(JournalError::Parse { line: 1, .. })
        ));
    }

    #[test]
    fn latest_picks_the_newest_journal() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            latest(dir.path()),
            Err(JournalError::NoneFound(_))
        ));
        for run in ["a", "b"] {
            std::fs::create_dir(dir.path().join(run)).unwrap();
            std::fs::write(dir.path().join(run).join(JOURNAL_FILE), "").unwrap();
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        std::fs::create_dir(dir.path().join("c")).unwrap();
        assert_eq!(
            latest(dir.path()).unwrap(),
            dir.path().join("b").join(JOURNAL_FILE)
        );
    }
}
