//! The timeline: closed windows, streamed to `<run dir>/timeline.csv` as they close, so a
//! killed run still leaves its timeline for the post-mortem; and read back for analysis.

use std::{
    fs::{File, OpenOptions},
    io::{self, BufWriter, Write as _},
    path::{Path, PathBuf},
    sync::Arc,
};

use chrono::{DateTime, SecondsFormat, Utc};

use super::window::{us_to_ms, Counts, WindowSummary};

pub const TIMELINE_FILE: &str = "timeline.csv";

/// The CSV header; `phase` is last so the columns before it stay stable.
pub const HEADER: &str = "t_s,wall_time,rate_sent,p50_ms,p90_ms,p99_ms,p999_ms,max_ms,ok,\
                          err_4xx,err_429,err_5xx,timeouts,conn_errors,lag_p99_ms,phase";

#[derive(Debug, thiserror::Error)]
pub enum TimelineError {
    #[error("cannot write timeline {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("timeline line {line}: {what}")]
    Parse { line: usize, what: String },
}

/// One CSV row of a window.
pub fn csv_row(w: &WindowSummary) -> String {
    let ms = |us: u64| format!("{:.3}", us_to_ms(us));
    let c = &w.counts;
    format!(
        "{:.3},{},{:.1},{},{},{},{},{},{},{},{},{},{},{},{},{}",
        w.start_s,
        w.wall.to_rfc3339_opts(SecondsFormat::Millis, true),
        w.sent as f64 / w.len_s,
        ms(w.p50_us),
        ms(w.p90_us),
        ms(w.p99_us),
        ms(w.p999_us),
        ms(w.max_us),
        c.ok,
        c.err_4xx,
        c.err_429,
        c.err_5xx,
        c.timeouts,
        c.conn_errors,
        ms(w.lag_p99_us),
        w.phase
    )
}

/// Appends windows to a CSV file, flushed per window.
pub struct TimelineWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl TimelineWriter {
    /// Creates `path` with the header; fails if it exists (a run never overwrites).
    pub fn create(path: &Path) -> Result<Self, TimelineError> {
        let err = |source| TimelineError::Write {
            path: path.to_owned(),
            source,
        };
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(err)?;
        let mut w = TimelineWriter {
            path: path.to_owned(),
            out: BufWriter::new(file),
        };
        w.line(HEADER)?;
        Ok(w)
    }

    /// `timeline.csv` in `dir`, or `timeline-2.csv`, ... when a scenario before this one
    /// in the same run already wrote one.
    pub fn create_in(dir: &Path) -> Result<Self, TimelineError> {
        let mut n = 1;
        loop {
            let name = if n == 1 {
                TIMELINE_FILE.to_owned()
            } else {
                format!("timeline-{n}.csv")
            };
            match Self::create(&dir.join(name)) {
                Err(TimelineError::Write { source, .. })
                    if source.kind() == io::ErrorKind::AlreadyExists && n < 1000 =>
                {
                    n += 1
                }
                other => return other,
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn write(&mut self, w: &WindowSummary) -> Result<(), TimelineError> {
        self.line(&csv_row(w))
    }

    fn line(&mut self, text: &str) -> Result<(), TimelineError> {
        writeln!(self.out, "{text}")
            .and_then(|()| self.out.flush())
            .map_err(|source| TimelineError::Write {
                path: self.path.clone(),
                source,
            })
    }
}

/// Reads a timeline CSV back (for analysis of a recorded run). Percentiles come back at
/// the CSV's microsecond resolution; the window length is taken from consecutive rows
/// (1 s when there is a single row).
pub fn parse_csv(text: &str) -> Result<Vec<WindowSummary>, TimelineError> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Ok(Vec::new());
    };
    let cols: Vec<&str> = header.split(',').map(str::trim).collect();
    let col = |name: &str| cols.iter().position(|c| *c == name);
    let required = [
        "t_s",
        "wall_time",
        "rate_sent",
        "p50_ms",
        "p90_ms",
        "p99_ms",
        "p999_ms",
        "max_ms",
        "ok",
        "err_4xx",
        "err_429",
        "err_5xx",
        "timeouts",
        "conn_errors",
        "lag_p99_ms",
    ];
    let mut idx = Vec::new();
    for name in required {
        idx.push(col(name).ok_or_else(|| TimelineError::Parse {
            line: 1,
            what: format!("missing column {name}"),
        })?);
    }
    let phase_col = col("phase");

    let mut rows = Vec::new();
    for (i, line) in lines {
        let line_no = i + 1;
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let get = |k: usize| -> Result<&str, TimelineError> {
            fields
                .get(idx[k])
                .copied()
                .ok_or_else(|| TimelineError::Parse {
                    line: line_no,
                    what: format!("missing field {}", required[k]),
                })
        };
        let num = |k: usize| -> Result<f64, TimelineError> {
            get(k)?.parse::<f64>().map_err(|_| TimelineError::Parse {
                line: line_no,
                what: format!("{} is not a number", required[k]),
            })
        };
        let us = |k: usize| num(k).map(|ms| (ms * 1000.0).round() as u64);
        let count = |k: usize| num(k).map(|n| n as u64);
        let wall = DateTime::parse_from_rfc3339(get(1)?)
            .map_err(|_| TimelineError::Parse {
                line: line_no,
                what: "wall_time is not RFC 3339".into(),
            })?
            .with_timezone(&Utc);
        rows.push((
            num(0)?,
            num(2)?,
            WindowSummary {
                index: 0,
                start_s: 0.0,
                len_s: 1.0,
                wall,
                phase: Arc::from(phase_col.and_then(|c| fields.get(c)).copied().unwrap_or("")),
                sent: 0,
                counts: Counts {
                    ok: count(8)?,
                    err_4xx: count(9)?,
                    err_429: count(10)?,
                    err_5xx: count(11)?,
                    timeouts: count(12)?,
                    conn_errors: count(13)?,
                },
                p50_us: us(3)?,
                p90_us: us(4)?,
                p99_us: us(5)?,
                p999_us: us(6)?,
                max_us: us(7)?,
                lag_p99_us: us(14)?,
            },
        ));
    }
    let len_s = match rows.as_slice() {
        [a, b, ..] if b.0 > a.0 => b.0 - a.0,
        _ => 1.0,
    };
    Ok(rows
        .into_iter()
        .map(|(t, rate, mut w)| {
            w.start_s = t;
            w.len_s = len_s;
            w.index = (t / len_s).round() as u64;
            w.sent = (rate * len_s).round() as u64;
            w
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(index: u64, ok: u64, p99_ms: u64) -> WindowSummary {
        WindowSummary {
            index,
            start_s: index as f64,
            len_s: 1.0,
            wall: DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
                .unwrap()
                .with_timezone(&Utc)
                + chrono::Duration::seconds(index as i64),
            phase: Arc::from("before"),
            sent: ok + 1,
            counts: Counts {
                ok,
                err_429: 1,
                ..Counts::default()
            },
            p50_us: 1500,
            p90_us: 2000,
            p99_us: p99_ms * 1000,
            p999_us: p99_ms * 1000 + 1,
            max_us: p99_ms * 1000 + 7,
            lag_p99_us: 250,
        }
    }

    #[test]
    fn rows_have_the_documented_columns() {
        let row = csv_row(&window(2, 49, 12));
        assert_eq!(
            row,
            "2.000,2026-01-02T03:04:07.000Z,50.0,1.500,2.000,12.000,12.001,12.007,49,0,1,0,0,0,\
             0.250,before"
        );
        assert_eq!(HEADER.split(',').count(), row.split(',').count());
    }

    #[test]
    fn written_timelines_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = TimelineWriter::create_in(dir.path()).unwrap();
        let windows: Vec<WindowSummary> = (0..3).map(|i| window(i, 10 * i, 5 + i)).collect();
        for x in &windows {
            w.write(x).unwrap();
        }
        assert_eq!(w.path(), dir.path().join("timeline.csv"));
        let second = TimelineWriter::create_in(dir.path()).unwrap();
        assert_eq!(second.path(), dir.path().join("timeline-2.csv"));

        let text = std::fs::read_to_string(dir.path().join("timeline.csv")).unwrap();
        assert!(text.starts_with("t_s,wall_time,rate_sent,p50_ms"));
        assert_eq!(parse_csv(&text).unwrap(), windows);
    }

    #[test]
    fn bad_rows_name_their_line() {
        let e = parse_csv("t_s,wall_time\n").unwrap_err();
        assert_eq!(e.to_string(), "timeline line 1: missing column rate_sent");
        let text = format!(
            "{HEADER}\n{}\n",
            csv_row(&window(0, 1, 1)).replace("1.500", "x")
        );
        assert_eq!(
            parse_csv(&text).unwrap_err().to_string(),
            "timeline line 2: p50_ms is not a number"
        );
    }
}
