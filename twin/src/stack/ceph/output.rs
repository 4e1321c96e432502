//! `ceph ... -f json` outputs, in the shapes of the real captures (fixtures/upstream/ceph).
//! Keys that Ceph omits when zero (degraded_*, misplaced_*, recovering_*, client I/O
//! rates, inactive_pgs_ratio) are omitted here too. Objects' keys come out sorted (the
//! workspace's serde_json does not preserve insertion order); JSON parsers don't care.

use serde_json::{json, Map, Value};

use super::health::HealthCheck;
use super::model::CephModel;
use super::pgstate::*;

/// Cluster-wide figures shared by `status`, `pg stat`, `df` and the metrics.
pub(super) struct Stats {
    pub num_pgs: u64,
    /// (state bits, count), count-descending then bits-descending (`ceph status` order).
    pub by_state: Vec<(u64, u64)>,
    pub active: u64,
    pub objects: u64,
    pub data_bytes: u64,
    pub total: u64,
    pub used: u64,
    pub avail: u64,
    pub degraded: u64,
    pub misplaced: u64,
    pub copies: u64,
    pub rec_objects: u64,
    pub rec_bytes: u64,
    pub rec_objects_sec: u64,
    pub rec_bytes_sec: u64,
    pub wr_ops_sec: u64,
    pub wr_bytes_sec: u64,
    pub writes: bool,
}

fn app_metadata(app: &str) -> Value {
    let mut m = Map::new();
    m.insert(app.to_string(), json!({}));
    Value::Object(m)
}

/// A float Ceph's JSON formatter would print without a fraction when whole (`1`, `0`).
pub(super) fn num(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() < 9e15 {
        Value::from(f as i64)
    } else {
        Value::from(f)
    }
}

impl CephModel {
    pub(super) fn stats(&self) -> Stats {
        let mut counts: std::collections::BTreeMap<u64, u64> = Default::default();
        let mut active = 0;
        for pg in self.pgs.values() {
            let b = self.pg_bits(pg);
            *counts.entry(b).or_default() += 1;
            if b & ACTIVE != 0 {
                active += 1;
            }
        }
        let mut by_state: Vec<(u64, u64)> = counts.into_iter().collect();
        by_state.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));
        let (total, used) = self.osds.values().filter(|o| o.in_).fold((0, 0), |acc, o| {
            (acc.0 + o.size_bytes, acc.1 + self.osd_used_bytes(o.id))
        });
        let window = self.params.stats_window.as_secs_f64().max(1e-3);
        let (rec_objects, rec_bytes) = self.window_sum(&self.recovery_log);
        let (wr_ops, wr_bytes) = self.window_sum(&self.write_log);
        let (degraded, copies) = self.degraded_objects();
        Stats {
            num_pgs: self.pgs.len() as u64,
            by_state,
            active,
            objects: self.pgs.values().map(|p| p.objects).sum(),
            data_bytes: self.pgs.values().map(|p| p.bytes).sum(),
            total,
            used,
            avail: total.saturating_sub(used),
            degraded,
            misplaced: self.misplaced_objects().0,
            copies,
            rec_objects,
            rec_bytes,
            rec_objects_sec: (rec_objects as f64 / window) as u64,
            rec_bytes_sec: (rec_bytes as f64 / window) as u64,
            wr_ops_sec: (wr_ops as f64 / window) as u64,
            wr_bytes_sec: (wr_bytes as f64 / window) as u64,
            writes: wr_ops > 0,
        }
    }

    /// What accrued within the stats window (spans cut at its start, pro rata).
    fn window_sum(&self, log: &std::collections::VecDeque<super::model::Sample>) -> (u64, u64) {
        let start = self.now.saturating_sub(self.params.stats_window);
        let (mut ops, mut bytes) = (0.0, 0.0);
        for s in log {
            if s.at < start || s.at > self.now {
                continue;
            }
            let span = s.at.saturating_sub(s.from).as_secs_f64();
            let part = if span <= 0.0 {
                1.0
            } else {
                s.at.saturating_sub(s.from.max(start)).as_secs_f64() / span
            };
            ops += s.ops as f64 * part;
            bytes += s.bytes as f64 * part;
        }
        (ops.round() as u64, bytes.round() as u64)
    }

    /// Raw bytes used on an OSD: its overhead plus the copies it holds.
    pub(super) fn osd_used_bytes(&self, osd: i32) -> u64 {
        let data: u64 = self
            .pgs
            .values()
            .filter_map(|pg| {
                let h = pg.holders.get(&osd)?;
                (pg.objects > 0).then(|| h.objects.min(pg.objects) * (pg.bytes / pg.objects))
            })
            .sum();
        self.params.osd_overhead_bytes + data
    }

    fn health_value(&self, checks: &[HealthCheck], detail: bool) -> Value {
        let mut m = Map::new();
        for c in checks {
            let mut v = json!({
                "severity": c.severity.as_str(),
                "summary": {"message": c.message, "count": c.count},
                "muted": self.is_muted(c),
            });
            if detail {
                v["detail"] =
                    Value::Array(c.detail.iter().map(|d| json!({ "message": d })).collect());
            }
            m.insert(c.name.clone(), v);
        }
        let status = checks
            .iter()
            .filter(|c| !self.is_muted(c))
            .map(|c| c.severity)
            .max()
            .map_or("HEALTH_OK", |s| s.as_str());
        // `health_mute_t::dump`: code, ttl (only with one), sticky, summary, count.
        let mutes: Vec<Value> = self
            .mutes
            .iter()
            .map(|(code, mu)| {
                let mut v = json!({"code": code, "sticky": mu.sticky, "summary": mu.summary, "count": mu.count});
                if let Some(u) = mu.until {
                    v["ttl"] = json!(self.timestamp(u));
                }
                v
            })
            .collect();
        json!({"status": status, "checks": m, "mutes": mutes})
    }

    /// `ceph health -f json`.
    pub fn health_json(&self) -> Value {
        self.health_value(&self.health_checks(), false)
    }

    /// `ceph health detail -f json`.
    pub fn health_detail_json(&self) -> Value {
        self.health_value(&self.health_checks(), true)
    }

    /// The degraded/misplaced keys of `PGMapDigest::recovery_summary` (only when non-zero).
    fn recovery_keys(&self, s: &Stats, m: &mut Map<String, Value>) {
        if s.degraded > 0 && s.copies > 0 {
            let pc = s.degraded as f64 / s.copies as f64 * 100.0;
            m.insert("degraded_objects".into(), s.degraded.into());
            m.insert("degraded_total".into(), s.copies.into());
            m.insert("degraded_ratio".into(), (pc / 100.0).into());
        }
        if s.misplaced > 0 && s.copies > 0 {
            let pc = s.misplaced as f64 / s.copies as f64 * 100.0;
            m.insert("misplaced_objects".into(), s.misplaced.into());
            m.insert("misplaced_total".into(), s.copies.into());
            m.insert("misplaced_ratio".into(), (pc / 100.0).into());
        }
    }

    /// `PGMapDigest::recovery_rate_summary` keys (only while something was recovered in
    /// the stats window).
    fn recovery_rate_keys(&self, s: &Stats, m: &mut Map<String, Value>) {
        if s.rec_objects > 0 {
            m.insert(
                "recovering_objects_per_sec".into(),
                s.rec_objects_sec.into(),
            );
            m.insert("recovering_bytes_per_sec".into(), s.rec_bytes_sec.into());
            m.insert("recovering_keys_per_sec".into(), 0.into());
            m.insert("num_objects_recovered".into(), s.rec_objects.into());
            m.insert("num_bytes_recovered".into(), s.rec_bytes.into());
            m.insert("num_keys_recovered".into(), 0.into());
        }
    }

    pub(super) fn osdmap_summary_json(&self) -> Value {
        json!({
            "epoch": self.epoch,
            "num_osds": self.osds.len(),
            "num_up_osds": self.osds.values().filter(|o| o.up).count(),
            "osd_up_since": self.unix(self.last_up_change) as i64,
            "num_in_osds": self.osds.values().filter(|o| o.in_).count(),
            "osd_in_since": self.unix(self.last_in_change) as i64,
            "num_remapped_pgs": self.num_pg_temp(),
        })
    }

    /// PGs whose acting set differs from their up set (`pg_temp` entries).
    pub(super) fn num_pg_temp(&self) -> u64 {
        self.pgs
            .values()
            .filter(|p| !p.acting.is_empty() && p.up != p.acting)
            .count() as u64
    }

    pub(super) fn timestamp(&self, t: std::time::Duration) -> String {
        let unix = self.unix(t);
        let secs = unix.floor() as i64;
        let nanos = ((unix - unix.floor()) * 1e9) as u32;
        chrono::DateTime::from_timestamp(secs, nanos)
            .unwrap_or_default()
            .format("%Y-%m-%dT%H:%M:%S%.6f%z")
            .to_string()
    }

    /// `ceph status -f json`.
    pub fn status_json(&self) -> Value {
        let checks = self.health_checks();
        let s = self.stats();
        let mut pgmap = Map::new();
        pgmap.insert(
            "pgs_by_state".into(),
            Value::Array(
                s.by_state
                    .iter()
                    .map(|(b, n)| json!({"state_name": pg_state_string(*b), "count": n}))
                    .collect(),
            ),
        );
        pgmap.insert("num_pgs".into(), s.num_pgs.into());
        pgmap.insert("num_pools".into(), self.pools.len().into());
        pgmap.insert("num_objects".into(), s.objects.into());
        pgmap.insert("data_bytes".into(), s.data_bytes.into());
        pgmap.insert("bytes_used".into(), s.used.into());
        pgmap.insert("bytes_avail".into(), s.avail.into());
        pgmap.insert("bytes_total".into(), s.total.into());
        let inactive = s.num_pgs - s.active;
        if inactive > 0 {
            // dump_float of a float: 8/17 shows as 0.47058823704719543.
            let p = inactive as f32 / s.num_pgs as f32;
            pgmap.insert("inactive_pgs_ratio".into(), f64::from(p).into());
        }
        self.recovery_keys(&s, &mut pgmap);
        self.recovery_rate_keys(&s, &mut pgmap);
        if s.writes {
            pgmap.insert("write_bytes_sec".into(), s.wr_bytes_sec.into());
            pgmap.insert("read_op_per_sec".into(), 0.into());
            pgmap.insert("write_op_per_sec".into(), s.wr_ops_sec.into());
        }
        let mut services = Map::new();
        if !self.servicemap_osds.is_empty() {
            let mut daemons = Map::new();
            daemons.insert("summary".into(), "".into());
            for id in &self.servicemap_osds {
                daemons.insert(
                    id.to_string(),
                    json!({
                        "start_epoch": 0,
                        "start_stamp": "0.000000",
                        "gid": 0,
                        "addr": "(unrecognized address family 0)/0",
                        "metadata": {},
                        "task_status": {},
                    }),
                );
            }
            services.insert("osd".into(), json!({ "daemons": daemons }));
        }
        json!({
            "fsid": self.fsid,
            "health": self.health_value(&checks, false),
            "election_epoch": 2 * self.mons.len() as u64,
            "quorum": (0..self.mons.len()).collect::<Vec<_>>(),
            "quorum_names": self.mons,
            "quorum_age": self.now.as_secs(),
            "monmap": {
                "epoch": self.mons.len(),
                "min_mon_release_name": "reef",
                "num_mons": self.mons.len(),
            },
            "osdmap": self.osdmap_summary_json(),
            "pgmap": pgmap,
            "fsmap": {"epoch": 1, "by_rank": [], "up:standby": 0},
            "mgrmap": {
                "available": true,
                "num_standbys": self.mgr_standbys.len(),
                "modules": ["iostat", "nfs", "prometheus", "restful"],
                "services": {"prometheus": format!("http://{}:9283/", self.mgr_addr)},
            },
            "servicemap": {
                "epoch": self.servicemap_epoch,
                "modified": self.timestamp(self.servicemap_modified),
                "services": services,
            },
            "progress_events": {},
        })
    }

    /// `ceph osd stat -f json`.
    pub fn osd_stat_json(&self) -> Value {
        self.osdmap_summary_json()
    }

    /// `ceph osd tree -f json`.
    pub fn osd_tree_json(&self) -> Value {
        let mut nodes = vec![json!({
            "id": -1,
            "name": "default",
            "type": "root",
            "type_id": 11,
            "children": self.hosts.iter().rev().map(|h| h.id).collect::<Vec<_>>(),
        })];
        for h in &self.hosts {
            let mine: Vec<_> = self.osds.values().filter(|o| o.host == h.name).collect();
            nodes.push(json!({
                "id": h.id,
                "name": h.name,
                "type": "host",
                "type_id": 1,
                "pool_weights": {},
                "children": mine.iter().rev().map(|o| o.id).collect::<Vec<_>>(),
            }));
            for o in mine {
                nodes.push(json!({
                    "id": o.id,
                    "device_class": o.class.as_str(),
                    "name": o.name(),
                    "type": "osd",
                    "type_id": 0,
                    "crush_weight": o.crush_weight,
                    "depth": 2,
                    "pool_weights": {},
                    "exists": 1,
                    "status": if o.up { "up" } else { "down" },
                    "reweight": num(o.reweight()),
                    "primary_affinity": 1,
                }));
            }
        }
        json!({"nodes": nodes, "stray": []})
    }

    /// `ceph pg stat -f json`.
    pub fn pg_stat_json(&self) -> Value {
        let s = self.stats();
        let mut by_bits: Vec<(u64, u64)> = s.by_state.clone();
        by_bits.sort();
        let mut m = Map::new();
        m.insert(
            "num_pg_by_state".into(),
            Value::Array(
                by_bits
                    .iter()
                    .map(|(b, n)| json!({"name": pg_state_string(*b), "num": n}))
                    .collect(),
            ),
        );
        m.insert("num_pgs".into(), s.num_pgs.into());
        m.insert("num_bytes".into(), s.data_bytes.into());
        m.insert("total_bytes".into(), s.total.into());
        m.insert("total_avail_bytes".into(), s.avail.into());
        m.insert("total_used_bytes".into(), s.used.into());
        m.insert("total_used_raw_bytes".into(), s.used.into());
        if s.writes {
            m.insert("write_bytes_sec".into(), s.wr_bytes_sec.into());
            m.insert("io_sec".into(), s.wr_ops_sec.into());
        }
        self.recovery_keys(&s, &mut m);
        self.recovery_rate_keys(&s, &mut m);
        json!({"pg_ready": true, "pg_summary": m})
    }

    /// `ceph osd pool ls detail -f json`.
    pub fn osd_pool_ls_detail_json(&self) -> Value {
        Value::Array(
            self.pools
                .values()
                .map(|p| {
                    let pairs: Vec<(&str, Value)> = vec![
                        ("pool_id", json!(p.id)),
                        ("pool_name", json!(p.name)),
                        (
                            "create_time",
                            json!(self.timestamp(std::time::Duration::ZERO)),
                        ),
                        ("flags", json!(1)),
                        ("flags_names", json!("hashpspool")),
                        ("type", json!(1)),
                        ("size", json!(p.size)),
                        ("min_size", json!(p.min_size)),
                        ("crush_rule", json!(p.crush_rule)),
                        ("peering_crush_bucket_count", json!(0)),
                        ("peering_crush_bucket_target", json!(0)),
                        ("peering_crush_bucket_barrier", json!(0)),
                        ("peering_crush_bucket_mandatory_member", json!(i32::MAX)),
                        ("object_hash", json!(2)),
                        ("pg_autoscale_mode", json!("on")),
                        ("pg_num", json!(p.pg_num)),
                        ("pg_placement_num", json!(p.pg_num)),
                        ("pg_placement_num_target", json!(p.pg_num)),
                        ("pg_num_target", json!(p.pg_num)),
                        ("pg_num_pending", json!(p.pg_num)),
                        ("last_change", json!(p.last_change.to_string())),
                        ("last_force_op_resend", json!("0")),
                        ("auid", json!(0)),
                        ("snap_mode", json!("selfmanaged")),
                        ("snap_seq", json!(0)),
                        ("snap_epoch", json!(0)),
                        ("pool_snaps", json!([])),
                        ("removed_snaps", json!("[]")),
                        ("quota_max_bytes", json!(0)),
                        ("quota_max_objects", json!(0)),
                        ("tiers", json!([])),
                        ("tier_of", json!(-1)),
                        ("read_tier", json!(-1)),
                        ("write_tier", json!(-1)),
                        ("cache_mode", json!("none")),
                        ("target_max_bytes", json!(0)),
                        ("target_max_objects", json!(0)),
                        ("stripe_width", json!(0)),
                        ("expected_num_objects", json!(0)),
                        ("fast_read", json!(false)),
                        ("options", json!({})),
                        ("application_metadata", json!(app_metadata(&p.application))),
                    ];
                    Value::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
                })
                .collect(),
        )
    }

    /// Per pool: (stored bytes, objects, raw used bytes, max avail bytes).
    pub(super) fn pool_usage(&self, pool: u32) -> (u64, u64, u64, u64) {
        let p = &self.pools[&pool];
        let (stored, objects) = self
            .pgs_of(pool)
            .fold((0, 0), |a, pg| (a.0 + pg.bytes, a.1 + pg.objects));
        let avail: u64 = self
            .osds
            .values()
            .filter(|o| o.in_ && p.device_class.is_none_or(|c| c == o.class))
            .map(|o| o.size_bytes.saturating_sub(self.osd_used_bytes(o.id)))
            .sum();
        // Leave the full ratio (0.95) out, spread over the replicas.
        let max_avail = (avail as f64 * 0.95 / f64::from(p.size)) as u64;
        (stored, objects, stored * u64::from(p.size), max_avail)
    }

    /// `ceph df -f json`.
    pub fn df_json(&self) -> Value {
        let s = self.stats();
        let ratio = |used: u64, total: u64| {
            if total == 0 {
                0.0
            } else {
                used as f64 / total as f64
            }
        };
        let mut by_class = Map::new();
        let mut classes: Vec<_> = self.osds.values().map(|o| o.class).collect();
        classes.sort();
        classes.dedup();
        for c in classes {
            let (t, u) = self
                .osds
                .values()
                .filter(|o| o.in_ && o.class == c)
                .fold((0, 0), |a, o| {
                    (a.0 + o.size_bytes, a.1 + self.osd_used_bytes(o.id))
                });
            by_class.insert(
                c.as_str().into(),
                json!({
                    "total_bytes": t,
                    "total_avail_bytes": t.saturating_sub(u),
                    "total_used_bytes": u,
                    "total_used_raw_bytes": u,
                    "total_used_raw_ratio": ratio(u, t),
                }),
            );
        }
        let pools: Vec<Value> = self
            .pools
            .values()
            .map(|p| {
                let (stored, objects, used, max_avail) = self.pool_usage(p.id);
                json!({
                    "name": p.name,
                    "id": p.id,
                    "stats": {
                        "stored": stored,
                        "objects": objects,
                        "kb_used": used.div_ceil(1024),
                        "bytes_used": used,
                        "percent_used": ratio(used, used + max_avail),
                        "max_avail": max_avail,
                    },
                })
            })
            .collect();
        json!({
            "stats": {
                "total_bytes": s.total,
                "total_avail_bytes": s.avail,
                "total_used_bytes": s.used,
                "total_used_raw_bytes": s.used,
                "total_used_raw_ratio": ratio(s.used, s.total),
                "num_osds": self.osds.len(),
                "num_per_pool_osds": self.osds.len(),
                "num_per_pool_omap_osds": self.osds.len(),
            },
            "stats_by_class": by_class,
            "pools": pools,
        })
    }
}
