//! Health checks, with Ceph's names, summaries, counts and detail lines:
//! - `OSD_DOWN`, `OSD_HOST_DOWN`, `OSD_ROOT_DOWN`, `OSDMAP_FLAGS`, `POOL_NO_REDUNDANCY`
//!   from `OSDMap::check_health` (only *in* OSDs count as down: once an OSD is out, Ceph
//!   stops reporting it);
//! - `PG_AVAILABILITY` and `PG_DEGRADED` from `PGMap::get_health_checks`: `degraded` and
//!   `down`/`incomplete` are reported at once; `peering`, `undersized`, `stale` and
//!   `inactive` only once a PG has been stuck longer than `mon_pg_stuck_threshold` (which
//!   is why the lab saw HEALTH_OK with PGs peering).

use super::model::{flag_string, CephModel, PgId, NOBACKFILL, NODEEP_SCRUB, NODOWN, NOIN};
use super::model::{NOOUT, NOREBALANCE, NORECOVER, NOSCRUB, NOSNAPTRIM, NOTIERAGENT, NOUP};
use super::model::{PAUSERD, PAUSEWR};
use super::pgstate::*;
use super::text::timespan_str;
use std::collections::BTreeMap;

/// HEALTH_OK < HEALTH_WARN < HEALTH_ERR.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HealthStatus {
    Ok,
    Warn,
    Err,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Ok => "HEALTH_OK",
            HealthStatus::Warn => "HEALTH_WARN",
            HealthStatus::Err => "HEALTH_ERR",
        }
    }

    /// `ceph_health_status`: 0, 1, 2.
    pub fn metric(self) -> u8 {
        self as u8
    }

    /// The tag `ceph health detail` prints: `[WRN]`, `[ERR]`.
    pub(super) fn tag(self) -> &'static str {
        match self {
            HealthStatus::Ok => "[OK]",
            HealthStatus::Warn => "[WRN]",
            HealthStatus::Err => "[ERR]",
        }
    }
}

/// One active health check.
#[derive(Clone, Debug, PartialEq)]
pub struct HealthCheck {
    pub name: String,
    pub severity: HealthStatus,
    pub message: String,
    pub count: u64,
    pub detail: Vec<String>,
}

/// What a PG state means for the pool (`pg_consequence_t`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Consequence {
    Unavailable,
    Degraded,
}

/// Which recorded time a delayed report waits on.
#[derive(Clone, Copy)]
enum Stuck {
    Immediate,
    Active,
    Peered,
    Fullsized,
    Unstale,
}

/// `state_to_response` of `PGMap::get_health_checks` (the states the model produces), in
/// key order; `true` marks the inverted check (`inactive`: the ACTIVE bit is missing).
const RESPONSES: &[(u64, Consequence, Stuck, bool)] = &[
    (ACTIVE, Consequence::Unavailable, Stuck::Active, true),
    (DOWN, Consequence::Unavailable, Stuck::Immediate, false),
    (DEGRADED, Consequence::Degraded, Stuck::Immediate, false),
    (PEERING, Consequence::Unavailable, Stuck::Peered, false),
    (
        INCOMPLETE,
        Consequence::Unavailable,
        Stuck::Immediate,
        false,
    ),
    (STALE, Consequence::Unavailable, Stuck::Unstale, false),
    (UNDERSIZED, Consequence::Degraded, Stuck::Fullsized, false),
];

/// `OSDMap::check_health`'s OSDMAP_FLAGS: the flags it warns about.
const WARN_FLAGS: u32 = PAUSERD
    | PAUSEWR
    | NOUP
    | NODOWN
    | NOIN
    | NOOUT
    | NOBACKFILL
    | NORECOVER
    | NOSCRUB
    | NODEEP_SCRUB
    | NOTIERAGENT
    | NOSNAPTRIM
    | NOREBALANCE;

#[derive(Default)]
struct Causes {
    states: BTreeMap<u64, u64>,
    messages: BTreeMap<PgId, String>,
}

impl CephModel {
    /// The overall status: the worst active check that is not muted.
    pub fn health_status(&self) -> HealthStatus {
        self.health_checks()
            .iter()
            .filter(|c| !self.is_muted(c))
            .map(|c| c.severity)
            .max()
            .unwrap_or(HealthStatus::Ok)
    }

    /// Whether `ceph health mute` silences this check now (a non-sticky mute lapses
    /// when the check's count grows past the muted one, as Ceph's `check_mutes`).
    pub fn is_muted(&self, c: &HealthCheck) -> bool {
        self.mutes.get(&c.name).is_some_and(|m| {
            m.until.is_none_or(|u| self.now < u) && (m.sticky || c.count <= m.count)
        })
    }

    /// The active health checks, sorted by name (as Ceph's `health_check_map_t`).
    pub fn health_checks(&self) -> Vec<HealthCheck> {
        let mut checks = Vec::new();
        self.osd_checks(&mut checks);
        self.pg_checks(&mut checks);
        checks.sort_by(|a, b| a.name.cmp(&b.name));
        checks
    }

    fn location(&self, host: &str) -> String {
        format!("root=default,host={host}")
    }

    fn osd_checks(&self, checks: &mut Vec<HealthCheck>) {
        // Down *in* OSDs; the hosts all of whose OSDs are down; the root if all are.
        let down_in: Vec<i32> = self
            .osds
            .values()
            .filter(|o| o.in_ && !o.up)
            .map(|o| o.id)
            .collect();
        if !down_in.is_empty() {
            let mut down_hosts: Vec<(i32, String, u64)> = Vec::new();
            for h in &self.hosts {
                let mine: Vec<_> = self.osds.values().filter(|o| o.host == h.name).collect();
                let triggered = mine.iter().any(|o| down_in.contains(&o.id));
                if triggered && mine.iter().all(|o| !o.up) {
                    down_hosts.push((h.id, h.name.clone(), mine.len() as u64));
                }
            }
            if !down_hosts.is_empty() && down_hosts.len() == self.hosts.len() {
                let n: u64 = down_hosts.iter().map(|h| h.2).sum();
                checks.push(HealthCheck {
                    name: "OSD_ROOT_DOWN".into(),
                    severity: HealthStatus::Warn,
                    message: format!("1 root ({n} osds) down"),
                    count: 1,
                    detail: vec![format!("root default ({n} osds) is down")],
                });
            }
            if !down_hosts.is_empty() {
                let n: u64 = down_hosts.iter().map(|h| h.2).sum();
                let plural = if down_hosts.len() > 1 { "s" } else { "" };
                // Detail in reverse bucket-id order (a set<int> walked with rbegin).
                let mut sorted = down_hosts.clone();
                sorted.sort_by_key(|h| std::cmp::Reverse(h.0));
                checks.push(HealthCheck {
                    name: "OSD_HOST_DOWN".into(),
                    severity: HealthStatus::Warn,
                    message: format!("{} host{plural} ({n} osds) down", down_hosts.len()),
                    count: down_hosts.len() as u64,
                    detail: sorted
                        .iter()
                        .map(|(_, name, k)| {
                            format!("host {name} (root=default) ({k} osds) is down")
                        })
                        .collect(),
                });
            }
            checks.push(HealthCheck {
                name: "OSD_DOWN".into(),
                severity: HealthStatus::Warn,
                message: format!("{} osds down", down_in.len()),
                count: down_in.len() as u64,
                detail: down_in
                    .iter()
                    .map(|id| format!("osd.{id} ({}) is down", self.location(&self.osds[id].host)))
                    .collect(),
            });
        }
        let warn = self.flags & WARN_FLAGS;
        if warn != 0 {
            let s = flag_string(warn);
            checks.push(HealthCheck {
                name: "OSDMAP_FLAGS".into(),
                severity: HealthStatus::Warn,
                message: format!("{s} flag(s) set"),
                // "kludgey but sufficient": Ceph counts the string's length.
                count: s.len() as u64,
                detail: Vec::new(),
            });
        }
        let no_redundancy: Vec<String> = self
            .pools
            .values()
            .filter(|p| p.size == 1)
            .map(|p| format!("pool '{}' has no replicas configured", p.name))
            .collect();
        if !no_redundancy.is_empty() {
            checks.push(HealthCheck {
                name: "POOL_NO_REDUNDANCY".into(),
                severity: HealthStatus::Warn,
                message: format!(
                    "{} pool(s) have no replicas configured",
                    no_redundancy.len()
                ),
                count: no_redundancy.len() as u64,
                detail: no_redundancy,
            });
        }
    }

    fn pg_checks(&self, checks: &mut Vec<HealthCheck>) {
        let now = self.now.as_secs_f64();
        let cutoff = now - self.params.mon_pg_stuck_threshold.as_secs_f64();
        let max = self.params.mon_health_max_detail;
        let mut detected: BTreeMap<Consequence, Causes> = BTreeMap::new();
        for pg in self.pgs.values() {
            let bits = self.pg_bits(pg);
            for &(state, consequence, stuck, invert) in RESPONSES {
                if (bits & state != 0) == invert {
                    continue;
                }
                let since = match stuck {
                    Stuck::Immediate => None,
                    Stuck::Active => Some(pg.last_active),
                    Stuck::Peered => Some(pg.last_peered),
                    Stuck::Fullsized => Some(pg.last_fullsized),
                    Stuck::Unstale => Some(pg.last_unstale),
                };
                if let Some(last) = since {
                    match last {
                        None if pg.last_change.as_secs_f64() >= cutoff => continue,
                        Some(t) if t.as_secs_f64() >= cutoff => continue,
                        _ => {}
                    }
                }
                let causes = detected.entry(consequence).or_default();
                *causes.states.entry(state).or_default() += 1;
                if causes.messages.len() > max {
                    continue;
                }
                let acting = vector_string(&pg.acting);
                let msg = match since {
                    Some(last) => {
                        let name = if invert {
                            "inactive".to_string()
                        } else {
                            pg_state_string(state)
                        };
                        let how_long = match last {
                            None => " since forever".to_string(),
                            Some(t) => format!(" for {}", timespan_str(self.now.saturating_sub(t))),
                        };
                        format!(
                            "pg {} is stuck {name}{how_long}, current state {}, last acting {acting}",
                            pg.id,
                            pg_state_string(bits)
                        )
                    }
                    None => {
                        let mut m =
                            format!("pg {} is {}, acting {acting}", pg.id, pg_state_string(bits));
                        if bits & INCOMPLETE != 0 {
                            let pool = &self.pools[&pg.id.pool];
                            if pool.min_size > 1 {
                                m.push_str(&format!(
                                    " (reducing pool {} min_size from {} may help; search ceph.com/docs for 'incomplete')",
                                    pool.name, pool.min_size
                                ));
                            }
                        }
                        m
                    }
                };
                causes.messages.insert(pg.id, msg);
            }
        }
        for (consequence, causes) in detected {
            let (name, mut summary) = match consequence {
                Consequence::Unavailable => {
                    ("PG_AVAILABILITY", "Reduced data availability: ".to_string())
                }
                Consequence::Degraded => ("PG_DEGRADED", "Degraded data redundancy: ".to_string()),
            };
            if consequence == Consequence::Degraded {
                let (d, total) = self.degraded_objects();
                if d > 0 && total > 0 {
                    summary.push_str(&format!(
                        "{d}/{total} objects degraded ({:.3}%), ",
                        d as f64 / total as f64 * 100.0
                    ));
                }
            }
            let parts: Vec<String> = causes
                .states
                .iter()
                .map(|(state, n)| {
                    let what = if *state == ACTIVE {
                        "inactive".to_string()
                    } else {
                        pg_state_string(*state)
                    };
                    format!("{n} {} {what}", if *n > 1 { "pgs" } else { "pg" })
                })
                .collect();
            summary.push_str(&parts.join(", "));
            checks.push(HealthCheck {
                name: name.into(),
                severity: HealthStatus::Warn,
                message: summary,
                count: causes.states.values().sum(),
                detail: causes.messages.into_values().collect(),
            });
        }
    }
}

/// `[1,0]`: Ceph's `pg_vector_string`.
pub(super) fn vector_string(v: &[i32]) -> String {
    let parts: Vec<String> = v.iter().map(|o| o.to_string()).collect();
    format!("[{}]", parts.join(","))
}
