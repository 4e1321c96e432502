//! PG state bits and their names, as in Ceph's `osd_types.h` / `pg_state_string()`.

pub const CREATING: u64 = 1 << 0;
pub const ACTIVE: u64 = 1 << 1;
pub const CLEAN: u64 = 1 << 2;
pub const DOWN: u64 = 1 << 4;
pub const RECOVERY_UNFOUND: u64 = 1 << 5;
pub const BACKFILL_UNFOUND: u64 = 1 << 6;
pub const PREMERGE: u64 = 1 << 7;
pub const SCRUBBING: u64 = 1 << 8;
pub const DEGRADED: u64 = 1 << 10;
pub const INCONSISTENT: u64 = 1 << 11;
pub const PEERING: u64 = 1 << 12;
pub const REPAIR: u64 = 1 << 13;
pub const RECOVERING: u64 = 1 << 14;
pub const BACKFILL_WAIT: u64 = 1 << 15;
pub const INCOMPLETE: u64 = 1 << 16;
pub const STALE: u64 = 1 << 17;
pub const REMAPPED: u64 = 1 << 18;
pub const DEEP_SCRUB: u64 = 1 << 19;
pub const BACKFILLING: u64 = 1 << 20;
pub const BACKFILL_TOOFULL: u64 = 1 << 21;
pub const RECOVERY_WAIT: u64 = 1 << 22;
pub const UNDERSIZED: u64 = 1 << 23;
pub const ACTIVATING: u64 = 1 << 24;
pub const PEERED: u64 = 1 << 25;
pub const SNAPTRIM: u64 = 1 << 26;
pub const SNAPTRIM_WAIT: u64 = 1 << 27;
pub const RECOVERY_TOOFULL: u64 = 1 << 28;
pub const SNAPTRIM_ERROR: u64 = 1 << 29;
pub const FORCED_RECOVERY: u64 = 1 << 30;
pub const FORCED_BACKFILL: u64 = 1 << 31;
pub const FAILED_REPAIR: u64 = 1 << 32;
pub const LAGGY: u64 = 1 << 33;
pub const WAIT: u64 = 1 << 34;

/// The order `pg_state_string()` prints the states in (Ceph `osd_types.cc`), e.g.
/// `active+recovery_wait+undersized+degraded+remapped`, `stale+active+clean`,
/// `undersized+degraded+peered`.
const STRING_ORDER: &[(u64, &str)] = &[
    (STALE, "stale"),
    (CREATING, "creating"),
    (ACTIVE, "active"),
    (ACTIVATING, "activating"),
    (CLEAN, "clean"),
    (RECOVERY_WAIT, "recovery_wait"),
    (RECOVERY_TOOFULL, "recovery_toofull"),
    (RECOVERING, "recovering"),
    (FORCED_RECOVERY, "forced_recovery"),
    (DOWN, "down"),
    (RECOVERY_UNFOUND, "recovery_unfound"),
    (BACKFILL_UNFOUND, "backfill_unfound"),
    (UNDERSIZED, "undersized"),
    (DEGRADED, "degraded"),
    (REMAPPED, "remapped"),
    (PREMERGE, "premerge"),
    (SCRUBBING, "scrubbing"),
    (DEEP_SCRUB, "deep"),
    (INCONSISTENT, "inconsistent"),
    (PEERING, "peering"),
    (REPAIR, "repair"),
    (BACKFILL_WAIT, "backfill_wait"),
    (BACKFILLING, "backfilling"),
    (FORCED_BACKFILL, "forced_backfill"),
    (BACKFILL_TOOFULL, "backfill_toofull"),
    (INCOMPLETE, "incomplete"),
    (PEERED, "peered"),
    (SNAPTRIM, "snaptrim"),
    (SNAPTRIM_WAIT, "snaptrim_wait"),
    (SNAPTRIM_ERROR, "snaptrim_error"),
    (FAILED_REPAIR, "failed_repair"),
    (LAGGY, "laggy"),
    (WAIT, "wait"),
];

/// Ceph's `pg_state_string()`: the set bits joined by `+` in Ceph's order; `unknown` for 0.
pub fn pg_state_string(bits: u64) -> String {
    let names: Vec<&str> = STRING_ORDER
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, n)| *n)
        .collect();
    if names.is_empty() {
        "unknown".to_string()
    } else {
        names.join("+")
    }
}

/// The per-pool `ceph_pg_<state>` gauges of the mgr prometheus module, in its order
/// (`PG_STATES` in `src/pybind/mgr/prometheus/module.py`; see fixtures' metrics-*.txt).
/// `unknown` has no bit: it counts PGs whose state is unknown (never, in the model).
pub const METRIC_STATES: &[(&str, u64)] = &[
    ("active", ACTIVE),
    ("clean", CLEAN),
    ("down", DOWN),
    ("recovery_unfound", RECOVERY_UNFOUND),
    ("backfill_unfound", BACKFILL_UNFOUND),
    ("scrubbing", SCRUBBING),
    ("degraded", DEGRADED),
    ("inconsistent", INCONSISTENT),
    ("peering", PEERING),
    ("repair", REPAIR),
    ("recovering", RECOVERING),
    ("forced_recovery", FORCED_RECOVERY),
    ("backfill_wait", BACKFILL_WAIT),
    ("incomplete", INCOMPLETE),
    ("stale", STALE),
    ("remapped", REMAPPED),
    ("deep", DEEP_SCRUB),
    ("backfilling", BACKFILLING),
    ("forced_backfill", FORCED_BACKFILL),
    ("backfill_toofull", BACKFILL_TOOFULL),
    ("recovery_wait", RECOVERY_WAIT),
    ("recovery_toofull", RECOVERY_TOOFULL),
    ("undersized", UNDERSIZED),
    ("activating", ACTIVATING),
    ("peered", PEERED),
    ("snaptrim", SNAPTRIM),
    ("snaptrim_wait", SNAPTRIM_WAIT),
    ("snaptrim_error", SNAPTRIM_ERROR),
    ("creating", CREATING),
    ("unknown", 0),
    ("premerge", PREMERGE),
    ("failed_repair", FAILED_REPAIR),
    ("laggy", LAGGY),
    ("wait", WAIT),
];

#[cfg(test)]
mod t {
    use super::*;

    #[test]
    fn names_follow_ceph_order() {
        assert_eq!(pg_state_string(ACTIVE | CLEAN), "active+clean");
        assert_eq!(
            pg_state_string(ACTIVE | RECOVERY_WAIT | UNDERSIZED | DEGRADED | REMAPPED),
            "active+recovery_wait+undersized+degraded+remapped"
        );
        assert_eq!(
            pg_state_string(STALE | ACTIVE | CLEAN),
            "stale+active+clean"
        );
        assert_eq!(pg_state_string(REMAPPED | PEERING), "remapped+peering");
        assert_eq!(
            pg_state_string(ACTIVE | CLEAN | REMAPPED),
            "active+clean+remapped"
        );
        assert_eq!(
            pg_state_string(UNDERSIZED | DEGRADED | PEERED),
            "undersized+degraded+peered"
        );
        assert_eq!(
            pg_state_string(ACTIVE | UNDERSIZED | DEGRADED | REMAPPED | BACKFILLING),
            "active+undersized+degraded+remapped+backfilling"
        );
        assert_eq!(pg_state_string(0), "unknown");
    }
}
