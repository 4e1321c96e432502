//! The daily backup schedule, checked against what the documentation says (cron,
//! namespaces, volume snapshots, retention) and by its newest Backup. Criteria are
//! named `velero_schedule_*`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::velero::{parse_go_duration, ScheduleFacts, Status};
use crate::verdict::{Comparison, Criterion};

/// What the Schedule must be; None: not checked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Expected {
    pub cron: Option<String>,
    pub namespaces: Vec<String>,
    pub snapshot_volumes: Option<bool>,
    pub ttl: Option<Duration>,
}

impl Expected {
    /// From a two-column table (`key | value`): `schedule`/`cron`, `namespaces`
    /// (comma separated), `snapshotVolumes`, `ttl` (Go duration).
    pub fn from_rows(rows: &[Vec<String>]) -> Result<Expected, String> {
        let mut e = Expected::default();
        for row in rows {
            let [key, value] = row.as_slice() else {
                return Err(format!("table rows are `| key | value |`, got {row:?}"));
            };
            let value = value.trim();
            match key.trim() {
                "schedule" | "cron" => e.cron = Some(value.to_owned()),
                "namespaces" | "includedNamespaces" => {
                    e.namespaces = value
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from)
                        .collect();
                }
                "snapshotVolumes" | "snapshot volumes" => {
                    e.snapshot_volumes = Some(value.parse().map_err(|_| {
                        format!("snapshotVolumes must be true or false, got {value:?}")
                    })?);
                }
                "ttl" => {
                    e.ttl =
                        Some(parse_go_duration(value).ok_or_else(|| {
                            format!("ttl {value:?} is not a Go duration like 168h")
                        })?);
                }
                other => {
                    return Err(format!(
                        "unknown key {other:?}: use schedule, namespaces, snapshotVolumes, ttl"
                    ))
                }
            }
        }
        Ok(e)
    }
}

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// The criteria and, for each failed one, why (one line each).
pub fn judge(facts: &ScheduleFacts, expected: &Expected) -> (Vec<Criterion>, Vec<String>) {
    let mut criteria = Vec::new();
    let mut why = Vec::new();
    let enabled = !facts.paused && facts.phase.as_deref() != Some("FailedValidation");
    criteria.push(Criterion::new(
        "velero_schedule_enabled",
        flag(enabled),
        Comparison::Equal,
        1.0,
        "bool",
    ));
    if !enabled {
        why.push(format!(
            "it is {}",
            if facts.paused {
                "paused".to_owned()
            } else {
                format!("{:?}", facts.phase)
            }
        ));
    }
    if let Some(cron) = &expected.cron {
        let same = facts
            .cron
            .as_deref()
            .map(|c| c.split_whitespace().eq(cron.split_whitespace()));
        criteria.push(Criterion::new(
            "velero_schedule_cron",
            flag(same == Some(true)),
            Comparison::Equal,
            1.0,
            "match",
        ));
        if same != Some(true) {
            why.push(format!(
                "its cron is {:?}, not {cron:?}",
                facts.cron.as_deref().unwrap_or("")
            ));
        }
    }
    if !expected.namespaces.is_empty() {
        let covered = expected
            .namespaces
            .iter()
            .filter(|n| facts.namespaces.iter().any(|f| f == *n || f == "*"))
            .count();
        criteria.push(Criterion::new(
            "velero_schedule_namespaces",
            covered as f64,
            Comparison::AtLeast,
            expected.namespaces.len() as f64,
            "namespaces",
        ));
        if covered < expected.namespaces.len() {
            why.push(format!(
                "it backs up [{}], not all of [{}]",
                facts.namespaces.join(", "),
                expected.namespaces.join(", ")
            ));
        }
    }
    if let Some(want) = expected.snapshot_volumes {
        let have = facts.snapshot_volumes.unwrap_or(false);
        criteria.push(Criterion::new(
            "velero_schedule_snapshot_volumes",
            flag(have),
            Comparison::Equal,
            flag(want),
            "bool",
        ));
        if have != want {
            why.push(format!("snapshotVolumes is {have}, not {want}"));
        }
    }
    if let Some(ttl) = expected.ttl {
        let have_h = facts.ttl.map_or(0.0, |d| d.as_secs_f64() / 3600.0);
        let want_h = ttl.as_secs_f64() / 3600.0;
        criteria.push(Criterion::new(
            "velero_schedule_ttl_h",
            have_h,
            Comparison::Equal,
            want_h,
            "h",
        ));
        if (have_h - want_h).abs() > f64::EPSILON {
            why.push(format!("its backups are kept {have_h} h, not {want_h} h"));
        }
    }
    (criteria, why)
}

/// The newest scheduled Backup's age in hours (from its completion, else its start).
pub fn backup_age_h(backup: &Value, now: DateTime<Utc>) -> Option<f64> {
    let s = Status::of(backup);
    let t = s.completed.or(s.started)?;
    Some((now - t).num_milliseconds() as f64 / 3_600_000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table(rows: &[(&str, &str)]) -> Vec<Vec<String>> {
        rows.iter()
            .map(|(k, v)| vec![k.to_string(), v.to_string()])
            .collect()
    }

    fn documented() -> Expected {
        Expected::from_rows(&table(&[
            ("schedule", "0 2 * * *"),
            ("namespaces", "openalex, rook-ceph"),
            ("snapshotVolumes", "true"),
            ("ttl", "168h"),
        ]))
        .unwrap()
    }

    #[test]
    fn the_documented_schedule_passes() {
        let s = json!({"spec": {"schedule": "0 2 * * *", "template": {
            "includedNamespaces": ["openalex", "rook-ceph"], "snapshotVolumes": true, "ttl": "168h0m0s"}},
            "status": {"phase": "Enabled"}});
        let (criteria, why) = judge(&ScheduleFacts::of(&s), &documented());
        assert!(why.is_empty(), "{why:?}");
        let names: Vec<&str> = criteria.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "velero_schedule_enabled",
                "velero_schedule_cron",
                "velero_schedule_namespaces",
                "velero_schedule_snapshot_volumes",
                "velero_schedule_ttl_h"
            ]
        );
        assert!(criteria.iter().all(|c| c.pass && c.gating));
    }

    #[test]
    fn each_difference_is_named() {
        let s = json!({"spec": {"schedule": "0 3 * * *", "paused": true, "template": {
            "includedNamespaces": ["openalex"], "ttl": "24h0m0s"}}});
        let (criteria, why) = judge(&ScheduleFacts::of(&s), &documented());
        assert!(criteria.iter().all(|c| !c.pass));
        assert_eq!(
            why,
            [
                "it is paused",
                "its cron is \"0 3 * * *\", not \"0 2 * * *\"",
                "it backs up [openalex], not all of [openalex, rook-ceph]",
                "snapshotVolumes is false, not true",
                "its backups are kept 24 h, not 168 h"
            ]
        );
        assert!(Expected::from_rows(&table(&[("retention", "7d")])).is_err());
        assert!(Expected::from_rows(&table(&[("ttl", "7d")])).is_err());
    }

    #[test]
    fn backup_age_from_completion() {
        let now = DateTime::parse_from_rfc3339("2026-11-26T08:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let b = json!({"status": {"phase": "Completed", "startTimestamp": "2026-11-26T02:00:00Z",
            "completionTimestamp": "2026-11-26T02:30:00Z"}});
        assert_eq!(backup_age_h(&b, now), Some(5.5));
        assert_eq!(backup_age_h(&json!({}), now), None);
    }
}
