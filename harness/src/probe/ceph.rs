//! Ceph, read through the Rook toolbox (`ceph status -f json`, `ceph osd pool ls
//! detail -f json`; exec via [`crate::fault::ceph::Toolbox`]) and through Rook's
//! objects (CephCluster `status.ceph.health`, CephBlockPool `spec`).
//!
//! The parsers are strict where leniency would lie: a status without a health, an
//! OSD map or a PG list is an error, never "healthy". They accept both OSD map
//! layouts: `osdmap.num_up_osds` (Reef and later) and `osdmap.osdmap.num_up_osds`
//! (older releases).

use kube::{
    api::{Api, DynamicObject},
    core::GroupVersionKind,
    discovery::ApiResource,
    Client,
};
use serde_json::Value;

use crate::fault::ceph::{CephError, Toolbox};

#[derive(Debug, thiserror::Error)]
pub enum CephProbeError {
    #[error(transparent)]
    Toolbox(#[from] CephError),
    #[error("`{command}` output lacks {what}")]
    Shape {
        command: &'static str,
        what: &'static str,
    },
    #[error("reading {what} failed")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
}

/// The parts of `ceph status -f json` the phase checks judge.
#[derive(Clone, Debug, PartialEq)]
pub struct CephStatus {
    /// `HEALTH_OK`, `HEALTH_WARN`, `HEALTH_ERR`.
    pub health: String,
    /// Health checks: (name, summary message), sorted by name.
    pub checks: Vec<(String, String)>,
    /// `ceph health mute` codes: their checks do not count in `health`.
    pub mutes: Vec<String>,
    pub osds: u64,
    pub osds_up: u64,
    pub osds_in: u64,
    /// `pgmap.num_pgs`.
    pub num_pgs: u64,
    /// (state name, count) as `pgs_by_state` lists them.
    pub pgs_by_state: Vec<(String, u64)>,
}

const STATUS: &str = "ceph status";

fn shape(what: &'static str) -> CephProbeError {
    CephProbeError::Shape {
        command: STATUS,
        what,
    }
}

/// PG state flags that do not make a PG less than active+clean: routine scrubbing
/// and snapshot trimming.
const BENIGN_PG_FLAGS: &[&str] = &["scrubbing", "deep", "snaptrim", "snaptrim_wait"];

/// Whether a PG state (`active+clean+scrubbing+deep`) is active+clean.
pub fn is_active_clean(state: &str) -> bool {
    let flags: Vec<&str> = state.split('+').collect();
    flags.contains(&"active")
        && flags.contains(&"clean")
        && flags
            .iter()
            .all(|f| matches!(*f, "active" | "clean") || BENIGN_PG_FLAGS.contains(f))
}

impl CephStatus {
    pub fn parse(v: &Value) -> Result<CephStatus, CephProbeError> {
        let health = v
            .pointer("/health/status")
            .and_then(Value::as_str)
            .ok_or_else(|| shape("health.status"))?
            .to_owned();
        let mut checks: Vec<(String, String)> = v
            .pointer("/health/checks")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(name, c)| {
                let msg = c
                    .pointer("/summary/message")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                (name.clone(), msg.to_owned())
            })
            .collect();
        checks.sort();
        let mut mutes: Vec<String> = v
            .pointer("/health/mutes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|m| m["code"].as_str().map(str::to_owned))
            .collect();
        mutes.sort();
        // Reef+ flattened the OSD map summary; older releases nest it once more.
        let osdmap = v.get("osdmap").ok_or_else(|| shape("osdmap"))?;
        let osdmap = match osdmap.get("osdmap") {
            Some(inner) if inner.is_object() => inner,
            _ => osdmap,
        };
        let count = |key: &'static str| {
            osdmap
                .get(key)
                .and_then(Value::as_u64)
                .ok_or_else(|| shape(key))
        };
        let (osds, osds_up, osds_in) = (
            count("num_osds")?,
            count("num_up_osds")?,
            count("num_in_osds")?,
        );
        let pgmap = v.get("pgmap").ok_or_else(|| shape("pgmap"))?;
        let states = pgmap
            .get("pgs_by_state")
            .and_then(Value::as_array)
            .ok_or_else(|| shape("pgmap.pgs_by_state"))?;
        let mut pgs_by_state = Vec::new();
        for s in states {
            let name = s
                .get("state_name")
                .and_then(Value::as_str)
                .ok_or_else(|| shape("pgs_by_state[].state_name"))?;
            let n = s
                .get("count")
                .and_then(Value::as_u64)
                .ok_or_else(|| shape("pgs_by_state[].count"))?;
            pgs_by_state.push((name.to_owned(), n));
        }
        let listed: u64 = pgs_by_state.iter().map(|(_, n)| n).sum();
        let num_pgs = pgmap
            .get("num_pgs")
            .and_then(Value::as_u64)
            .unwrap_or(listed);
        Ok(CephStatus {
            health,
            checks,
            mutes,
            osds,
            osds_up,
            osds_in,
            num_pgs,
            pgs_by_state,
        })
    }

    /// PGs whose state is active+clean.
    pub fn pgs_active_clean(&self) -> u64 {
        self.pgs_by_state
            .iter()
            .filter(|(s, _)| is_active_clean(s))
            .map(|(_, n)| n)
            .sum()
    }

    /// Every PG Ceph counts; PGs missing from the state list count as not clean.
    pub fn pgs_total(&self) -> u64 {
        let listed: u64 = self.pgs_by_state.iter().map(|(_, n)| n).sum();
        self.num_pgs.max(listed)
    }

    /// `OSD_DOWN: 1 osds down; PG_DEGRADED: ...`, or `no health checks`; muted checks
    /// are marked and the mutes named, as they hide problems from the status.
    pub fn describe_checks(&self) -> String {
        let mut out = if self.checks.is_empty() {
            "no health checks".to_owned()
        } else {
            self.checks
                .iter()
                .map(|(n, m)| {
                    let muted = if self.mutes.contains(n) {
                        " (muted)"
                    } else {
                        ""
                    };
                    format!("{n}: {m}{muted}")
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        if !self.mutes.is_empty() {
            out.push_str(&format!("; muted: {}", self.mutes.join(", ")));
        }
        out
    }

    /// States other than active+clean with their counts: `peering: 11, stale+active+clean: 2`.
    pub fn describe_unclean(&self) -> String {
        let parts: Vec<String> = self
            .pgs_by_state
            .iter()
            .filter(|(s, _)| !is_active_clean(s))
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        if parts.is_empty() {
            format!(
                "{} of {} PGs are not in the state list",
                self.pgs_total() - self.pgs_active_clean(),
                self.pgs_total()
            )
        } else {
            parts.join(", ")
        }
    }
}

/// One pool of `ceph osd pool ls detail -f json`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolDetail {
    pub name: String,
    pub size: u64,
    pub min_size: u64,
}

pub fn parse_pools(v: &Value) -> Result<Vec<PoolDetail>, CephProbeError> {
    let shape = |what| CephProbeError::Shape {
        command: "ceph osd pool ls detail",
        what,
    };
    let items = v.as_array().ok_or_else(|| shape("a list of pools"))?;
    items
        .iter()
        .map(|p| {
            Ok(PoolDetail {
                name: p
                    .get("pool_name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| shape("pool_name"))?
                    .to_owned(),
                size: p
                    .get("size")
                    .and_then(Value::as_u64)
                    .ok_or_else(|| shape("size"))?,
                min_size: p.get("min_size").and_then(Value::as_u64).unwrap_or(0),
            })
        })
        .collect()
}

/// `ceph status`, parsed.
pub async fn status(client: &Client) -> Result<CephStatus, CephProbeError> {
    let v = Toolbox::find(client)
        .await?
        .ceph_json(client, &["status"])
        .await?;
    CephStatus::parse(&v)
}

/// One OSD as `ceph osd tree -f json` lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct OsdState {
    pub id: i64,
    pub up: bool,
    /// In the data placement (`reweight` > 0); out is `reweight` 0.
    pub in_: bool,
}

/// The OSDs of `ceph osd tree -f json`: nodes of type `osd`.
pub fn parse_osd_tree(v: &Value) -> Result<Vec<OsdState>, CephProbeError> {
    const TREE: &str = "ceph osd tree";
    let nodes = v["nodes"].as_array().ok_or(CephProbeError::Shape {
        command: TREE,
        what: "a nodes list",
    })?;
    nodes
        .iter()
        .filter(|n| n["type"] == "osd")
        .map(|n| {
            let bad = || CephProbeError::Shape {
                command: TREE,
                what: "an id, status and reweight for every OSD",
            };
            Ok(OsdState {
                id: n["id"].as_i64().ok_or_else(bad)?,
                up: n["status"].as_str().ok_or_else(bad)? == "up",
                in_: n["reweight"].as_f64().ok_or_else(bad)? > 0.0,
            })
        })
        .collect()
}

/// `ceph osd tree`, parsed: every OSD's up/in state.
pub async fn osd_tree(client: &Client) -> Result<Vec<OsdState>, CephProbeError> {
    let v = Toolbox::find(client)
        .await?
        .ceph_json(client, &["osd", "tree"])
        .await?;
    parse_osd_tree(&v)
}

/// `ceph osd pool ls detail`, parsed.
pub async fn pools(client: &Client) -> Result<Vec<PoolDetail>, CephProbeError> {
    let v = Toolbox::find(client)
        .await?
        .ceph_json(client, &["osd", "pool", "ls", "detail"])
        .await?;
    parse_pools(&v)
}

fn rook(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("ceph.rook.io", "v1", kind))
}

/// A Rook object (`CephCluster`, `CephBlockPool`); None when it does not exist.
pub async fn rook_object(
    client: &Client,
    kind: &str,
    namespace: &str,
    name: &str,
) -> Result<Option<Value>, CephProbeError> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &rook(kind));
    let obj = api
        .get_opt(name)
        .await
        .map_err(|source| CephProbeError::Api {
            what: format!("{kind} {namespace}/{name}"),
            source,
        })?;
    Ok(obj.and_then(|o| serde_json::to_value(o).ok()))
}

/// CephCluster `status.ceph.health` (`status.phase` is not a health signal).
pub fn cephcluster_health(cluster: &Value) -> Option<&str> {
    cluster
        .pointer("/status/ceph/health")
        .and_then(Value::as_str)
}

/// A CephBlockPool's declared (replicated size, device class).
pub fn blockpool_spec(pool: &Value) -> (Option<u64>, Option<&str>) {
    (
        pool.pointer("/spec/replicated/size")
            .and_then(Value::as_u64),
        pool.pointer("/spec/deviceClass").and_then(Value::as_str),
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn fixture(name: &str) -> Value {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures/upstream/ceph")
            .join(name);
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
    }

    #[test]
    fn captured_osd_trees_parse() {
        let out = parse_osd_tree(&fixture("osd-out-osd-tree.json")).unwrap();
        let states: Vec<(i64, bool, bool)> = out.iter().map(|o| (o.id, o.up, o.in_)).collect();
        assert_eq!(states, [(0, true, true), (1, true, false), (2, true, true)]);
        let down = parse_osd_tree(&fixture("osd-down-osd-tree.json")).unwrap();
        assert_eq!((down[2].up, down[2].in_), (false, true));
        assert!(parse_osd_tree(&serde_json::json!({"stray": []})).is_err());
        // Mutes hide checks from the status: the description names them.
        let mut v = fixture("osd-down-status.json");
        v["health"]["status"] = "HEALTH_OK".into();
        v["health"]["mutes"] =
            serde_json::json!([{"code": "OSD_DOWN", "sticky": true, "summary": "", "count": 0}]);
        let s = CephStatus::parse(&v).unwrap();
        assert_eq!(s.mutes, ["OSD_DOWN"]);
        assert!(
            s.describe_checks()
                .contains("OSD_DOWN: 1 osds down (muted)"),
            "{}",
            s.describe_checks()
        );
        assert!(s.describe_checks().ends_with("; muted: OSD_DOWN"));
        // An OSD without its reweight is an error, not "in".
        assert!(parse_osd_tree(
            &serde_json::json!({"nodes": [{"id": 0, "type": "osd", "status": "up"}]})
        )
        .is_err());
    }

    #[test]
    fn every_captured_status_parses() {
        // (file, health, up, in, active+clean, total)
        let expected: &[(&str, &str, u64, u64, u64, u64)] = &[
            ("degraded-status.json", "HEALTH_WARN", 2, 3, 0, 17),
            ("healthok-but-peering-status.json", "HEALTH_OK", 3, 3, 9, 17),
            ("healthy-status.json", "HEALTH_OK", 3, 3, 17, 17),
            ("osd-down-stale-status.json", "HEALTH_WARN", 2, 3, 4, 17),
            ("osd-down-status.json", "HEALTH_WARN", 2, 3, 17, 17),
            ("osd-in-peering-status.json", "HEALTH_WARN", 3, 3, 2, 17),
            ("osd-out-status.json", "HEALTH_OK", 3, 2, 0, 17),
            ("osd-restarted-status.json", "HEALTH_WARN", 3, 3, 0, 17),
            ("peering-status.json", "HEALTH_WARN", 2, 3, 0, 17),
            ("recovered-status.json", "HEALTH_OK", 3, 3, 17, 17),
            ("recovering-status.json", "HEALTH_WARN", 3, 3, 1, 17),
        ];
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/upstream/ceph");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with("-status.json"))
            .collect();
        files.sort();
        let listed: Vec<&str> = expected.iter().map(|e| e.0).collect();
        assert_eq!(files, listed, "every captured status has an expectation");
        for &(file, health, up, inn, clean, total) in expected {
            let s = CephStatus::parse(&fixture(file)).unwrap();
            assert_eq!(s.health, health, "{file}");
            assert_eq!((s.osds, s.osds_up, s.osds_in), (3, up, inn), "{file}");
            assert_eq!(
                (s.pgs_active_clean(), s.pgs_total()),
                (clean, total),
                "{file}"
            );
        }
        let d = CephStatus::parse(&fixture("degraded-status.json")).unwrap();
        assert!(d
            .describe_checks()
            .starts_with("OSD_DOWN: 1 osds down; PG_DEGRADED: "));
        assert_eq!(
            d.describe_unclean(),
            "active+undersized+degraded: 16, active+undersized: 1"
        );
    }

    #[test]
    fn older_nested_osdmap_layout() {
        let v: Value = serde_json::from_str(
            r#"{"health": {"status": "HEALTH_OK", "checks": {}},
                "osdmap": {"osdmap": {"epoch": 9, "num_osds": 6, "num_up_osds": 5, "num_in_osds": 6}},
                "pgmap": {"num_pgs": 4, "pgs_by_state": [{"state_name": "active+clean+scrubbing+deep", "count": 4}]}}"#,
        )
        .unwrap();
        let s = CephStatus::parse(&v).unwrap();
        assert_eq!((s.osds, s.osds_up, s.osds_in), (6, 5, 6));
        assert_eq!(s.pgs_active_clean(), 4);
    }

    #[test]
    fn missing_parts_are_errors_not_health() {
        let base: Value = serde_json::from_str(
            r#"{"health": {"status": "HEALTH_OK"},
                "osdmap": {"num_osds": 3, "num_up_osds": 3, "num_in_osds": 3},
                "pgmap": {"num_pgs": 17, "pgs_by_state": [{"state_name": "active+clean", "count": 17}]}}"#,
        )
        .unwrap();
        assert!(CephStatus::parse(&base).is_ok());
        for (pointer, what) in [
            ("/pgmap/pgs_by_state", "pgmap.pgs_by_state"),
            ("/health/status", "health.status"),
            ("/osdmap/num_up_osds", "num_up_osds"),
        ] {
            let mut v = base.clone();
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            v.pointer_mut(parent)
                .unwrap()
                .as_object_mut()
                .unwrap()
                .remove(key);
            let e = CephStatus::parse(&v).unwrap_err();
            assert_eq!(e.to_string(), format!("`ceph status` output lacks {what}"));
        }
        // Fewer PGs listed than counted: the rest are not clean.
        let mut v = base.clone();
        v["pgmap"]["num_pgs"] = 20.into();
        let s = CephStatus::parse(&v).unwrap();
        assert_eq!((s.pgs_active_clean(), s.pgs_total()), (17, 20));
    }

    #[test]
    fn pg_states() {
        assert!(is_active_clean("active+clean"));
        assert!(is_active_clean("active+clean+scrubbing"));
        assert!(!is_active_clean("active+clean+remapped"));
        assert!(!is_active_clean("stale+active+clean"));
        assert!(!is_active_clean("peering"));
    }

    #[test]
    fn pools_and_rook_objects() {
        let v: Value = serde_json::from_str(
            r#"[{"pool_name": ".mgr", "size": 3, "min_size": 2, "crush_rule": 0},
                {"pool_name": "nvme-pool", "size": 2, "min_size": 1, "crush_rule": 1}]"#,
        )
        .unwrap();
        let pools = parse_pools(&v).unwrap();
        assert_eq!(
            pools[1],
            PoolDetail {
                name: "nvme-pool".into(),
                size: 2,
                min_size: 1
            }
        );
        assert!(parse_pools(&serde_json::json!([{"size": 2}])).is_err());
        let bp: Value = serde_yaml::from_str(
            "spec: {deviceClass: nvme, failureDomain: host, replicated: {size: 2}}",
        )
        .unwrap();
        assert_eq!(blockpool_spec(&bp), (Some(2), Some("nvme")));
        let cc: Value =
            serde_yaml::from_str("status: {phase: Ready, ceph: {health: HEALTH_WARN}}").unwrap();
        assert_eq!(cephcluster_health(&cc), Some("HEALTH_WARN"));
    }
}
