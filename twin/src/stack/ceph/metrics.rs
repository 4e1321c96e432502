//! The mgr `prometheus` module's exposition (`:9283/metrics`), shaped like
//! fixtures/upstream/ceph/metrics-*.txt: `# HELP`/`# TYPE` lines, Python float values
//! (`1.0`), per-pool `ceph_pg_<state>` gauges in the module's order, and
//! `ceph_health_detail` samples only for checks that have fired at least once (then kept,
//! at 0, once cleared).

use std::fmt::Write;

use super::model::{CephModel, NOBACKFILL, NODEEP_SCRUB, NODOWN, NOIN};
use super::model::{NOOUT, NOREBALANCE, NORECOVER, NOSCRUB, NOUP};
use super::pgstate::METRIC_STATES;
use super::CEPH_VERSION;

/// A float as Python's `repr` prints it (`1.0`, `0.5`, `12884901888.0`).
fn py(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e16 {
        format!("{v:.1}")
    } else {
        format!("{v}")
    }
}

struct Out(String);

impl Out {
    fn head(&mut self, name: &str, help: &str, kind: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }
    fn sample(&mut self, name: &str, labels: &[(&str, String)], v: f64) {
        if labels.is_empty() {
            let _ = writeln!(self.0, "{name} {}", py(v));
        } else {
            let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            let _ = writeln!(self.0, "{name}{{{}}} {}", l.join(","), py(v));
        }
    }
}

/// The OSD flags the module exports as `ceph_osd_flag_<name>` (`OSD_FLAGS`).
const OSD_FLAGS: &[(&str, u32)] = &[
    ("noup", NOUP),
    ("nodown", NODOWN),
    ("noout", NOOUT),
    ("noin", NOIN),
    ("nobackfill", NOBACKFILL),
    ("norebalance", NOREBALANCE),
    ("norecover", NORECOVER),
    ("noscrub", NOSCRUB),
    ("nodeep-scrub", NODEEP_SCRUB),
];

impl CephModel {
    fn osd_addr(&self, id: i32) -> String {
        let host = self
            .hosts
            .iter()
            .position(|h| self.osds.get(&id).is_some_and(|o| o.host == h.name))
            .unwrap_or(0);
        format!("10.244.{}.{}", host + 1, 20 + id)
    }

    /// The text served at the mgr's `/metrics`.
    pub fn prometheus_metrics(&self) -> String {
        let checks = self.health_checks();
        let mut o = Out(String::new());

        o.head("ceph_health_status", "Cluster health status", "untyped");
        o.sample(
            "ceph_health_status",
            &[],
            f64::from(self.health_status().metric()),
        );

        o.head("ceph_mon_quorum_status", "Monitors in quorum", "gauge");
        for m in &self.mons {
            o.sample(
                "ceph_mon_quorum_status",
                &[("ceph_daemon", format!("mon.{m}"))],
                1.0,
            );
        }
        o.head(
            "ceph_mgr_status",
            "MGR status (0=standby, 1=active)",
            "gauge",
        );
        o.sample(
            "ceph_mgr_status",
            &[("ceph_daemon", format!("mgr.{}", self.mgr))],
            1.0,
        );
        for s in &self.mgr_standbys {
            o.sample(
                "ceph_mgr_status",
                &[("ceph_daemon", format!("mgr.{s}"))],
                0.0,
            );
        }

        for (name, bit) in OSD_FLAGS {
            // The mgr's promethize(): a hyphen is not allowed in a metric name.
            let metric = format!("ceph_osd_flag_{}", name.replace('-', "_"));
            o.head(&metric, &format!("OSD Flag {name}"), "untyped");
            o.sample(&metric, &[], if self.flags & bit != 0 { 1.0 } else { 0.0 });
        }

        o.head("ceph_osd_metadata", "OSD Metadata", "untyped");
        for osd in self.osds.values() {
            let addr = self.osd_addr(osd.id);
            o.sample(
                "ceph_osd_metadata",
                &[
                    ("back_iface", String::new()),
                    ("ceph_daemon", osd.name()),
                    ("cluster_addr", addr.clone()),
                    ("device_class", osd.class.as_str().to_string()),
                    ("front_iface", String::new()),
                    ("hostname", osd.host.clone()),
                    ("objectstore", "bluestore".into()),
                    ("public_addr", addr),
                    ("ceph_version", CEPH_VERSION.into()),
                ],
                1.0,
            );
        }
        o.head("ceph_pool_metadata", "POOL Metadata", "untyped");
        for p in self.pools.values() {
            o.sample(
                "ceph_pool_metadata",
                &[
                    ("pool_id", p.id.to_string()),
                    ("name", p.name.clone()),
                    ("type", "replicated".into()),
                    ("description", format!("replica:{}", p.size)),
                    ("compression_mode", "none".into()),
                ],
                1.0,
            );
        }

        o.head("ceph_pg_total", "PG Total Count per Pool", "gauge");
        for p in self.pools.values() {
            o.sample(
                "ceph_pg_total",
                &[("pool_id", p.id.to_string())],
                f64::from(p.pg_num),
            );
        }

        o.head(
            "ceph_health_detail",
            "healthcheck status by type (0=inactive, 1=active)",
            "gauge",
        );
        let mut fired = self.fired_checks.clone();
        for c in &checks {
            fired.entry(c.name.clone()).or_insert(c.severity.as_str());
        }
        for (name, severity) in &fired {
            let active = checks.iter().any(|c| &c.name == name);
            o.sample(
                "ceph_health_detail",
                &[("name", name.clone()), ("severity", severity.to_string())],
                if active { 1.0 } else { 0.0 },
            );
        }

        o.head("ceph_osd_up", "OSD status up", "untyped");
        for osd in self.osds.values() {
            o.sample(
                "ceph_osd_up",
                &[("ceph_daemon", osd.name())],
                if osd.up { 1.0 } else { 0.0 },
            );
        }
        o.head("ceph_osd_in", "OSD status in", "untyped");
        for osd in self.osds.values() {
            o.sample(
                "ceph_osd_in",
                &[("ceph_daemon", osd.name())],
                if osd.in_ { 1.0 } else { 0.0 },
            );
        }
        o.head("ceph_osd_weight", "OSD status weight", "untyped");
        for osd in self.osds.values() {
            o.sample(
                "ceph_osd_weight",
                &[("ceph_daemon", osd.name())],
                osd.reweight(),
            );
        }

        let per_pool: Vec<(u32, Vec<u64>)> = self
            .pools
            .keys()
            .map(|&pid| {
                let bits: Vec<u64> = self.pgs_of(pid).map(|pg| self.pg_bits(pg)).collect();
                (pid, bits)
            })
            .collect();
        for (state, bit) in METRIC_STATES {
            let metric = format!("ceph_pg_{state}");
            o.head(&metric, &format!("PG {state} per pool"), "gauge");
            for (pid, bits) in &per_pool {
                let n = if *bit == 0 {
                    0
                } else {
                    bits.iter().filter(|b| *b & bit != 0).count()
                };
                o.sample(&metric, &[("pool_id", pid.to_string())], n as f64);
            }
        }

        let (degraded, _) = self.degraded_objects();
        let (misplaced, _) = self.misplaced_objects();
        for (what, v) in [
            ("degraded", degraded),
            ("misplaced", misplaced),
            ("unfound", 0),
        ] {
            let metric = format!("ceph_num_objects_{what}");
            o.head(&metric, &format!("Number of {what} objects"), "gauge");
            o.sample(&metric, &[], v as f64);
        }

        let s = self.stats();
        for (key, v) in [
            ("total_bytes", s.total),
            ("total_used_bytes", s.used),
            ("total_used_raw_bytes", s.used),
        ] {
            let metric = format!("ceph_cluster_{key}");
            o.head(&metric, &format!("DF {key}"), "gauge");
            o.sample(&metric, &[], v as f64);
        }
        let usage: Vec<(u32, (u64, u64, u64, u64))> = self
            .pools
            .keys()
            .map(|&pid| (pid, self.pool_usage(pid)))
            .collect();
        for (key, idx) in [
            ("stored", 0usize),
            ("objects", 1),
            ("bytes_used", 2),
            ("max_avail", 3),
        ] {
            let metric = format!("ceph_pool_{key}");
            o.head(&metric, &format!("DF pool {key}"), "gauge");
            for (pid, u) in &usage {
                let v = match idx {
                    0 => u.0,
                    1 => u.1,
                    2 => u.2,
                    _ => u.3,
                };
                o.sample(&metric, &[("pool_id", pid.to_string())], v as f64);
            }
        }
        o.head("ceph_osd_stat_bytes", "OSD stats bytes", "gauge");
        for osd in self.osds.values() {
            o.sample(
                "ceph_osd_stat_bytes",
                &[("ceph_daemon", osd.name())],
                osd.size_bytes as f64,
            );
        }
        o.head("ceph_osd_stat_bytes_used", "OSD stats bytes_used", "gauge");
        for osd in self.osds.values() {
            o.sample(
                "ceph_osd_stat_bytes_used",
                &[("ceph_daemon", osd.name())],
                self.osd_used_bytes(osd.id) as f64,
            );
        }
        o.0
    }
}
