//! Tests of the Ceph model: key paths of the real captures, the OSD drills, the CLI.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use super::*;

fn s(secs: f64) -> Duration {
    Duration::from_secs_f64(secs)
}

fn args(cmd: &str) -> Vec<String> {
    cmd.split_whitespace().map(String::from).collect()
}

fn stack() -> CephModel {
    CephModel::documented_stack(42, CephParams::realistic())
}

fn check_names(m: &CephModel) -> Vec<String> {
    m.health_checks().into_iter().map(|c| c.name).collect()
}

fn check<'a>(checks: &'a [HealthCheck], name: &str) -> Option<&'a HealthCheck> {
    checks.iter().find(|c| c.name == name)
}

fn pool_states(m: &CephModel, pool: u32) -> Vec<String> {
    m.pg_summaries()
        .into_iter()
        .filter(|p| p.id.pool == pool)
        .map(|p| p.state)
        .collect()
}

// ----- key paths of the real captures -----

/// Every key path of a JSON document: `a.b`, arrays as `a[]` (their elements' keys under
/// `a[].`).
fn key_paths(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.insert(p.clone());
                key_paths(v, &p, out);
            }
        }
        Value::Array(a) => {
            let p = format!("{prefix}[]");
            for e in a {
                key_paths(e, &p, out);
            }
        }
        _ => {}
    }
}

fn missing_paths(fixture: &str, ours: &Value) -> Vec<String> {
    let real: Value = serde_json::from_str(fixture).expect("fixture parses");
    let (mut want, mut have) = (BTreeSet::new(), BTreeSet::new());
    key_paths(&real, "", &mut want);
    key_paths(ours, "", &mut have);
    want.difference(&have).cloned().collect()
}

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../../../fixtures/upstream/ceph/", $name))
    };
}

/// (state, command, fixture text).
const FIXTURES: &[(&str, &str, &str)] = &[
    ("healthy", "status", fixture!("healthy-status.json")),
    ("healthy", "health", fixture!("healthy-health-detail.json")),
    ("healthy", "tree", fixture!("healthy-osd-tree.json")),
    ("healthy", "pgstat", fixture!("healthy-pg-stat.json")),
    ("osd-down", "status", fixture!("osd-down-status.json")),
    (
        "osd-down",
        "health",
        fixture!("osd-down-health-detail.json"),
    ),
    ("osd-down", "tree", fixture!("osd-down-osd-tree.json")),
    ("osd-down", "pgstat", fixture!("osd-down-pg-stat.json")),
    (
        "osd-down-stale",
        "status",
        fixture!("osd-down-stale-status.json"),
    ),
    (
        "osd-down-stale",
        "pgstat",
        fixture!("osd-down-stale-pg-stat.json"),
    ),
    ("peering", "status", fixture!("peering-status.json")),
    ("peering", "health", fixture!("peering-health-detail.json")),
    ("peering", "tree", fixture!("peering-osd-tree.json")),
    ("peering", "pgstat", fixture!("peering-pg-stat.json")),
    ("degraded", "status", fixture!("degraded-status.json")),
    (
        "degraded",
        "health",
        fixture!("degraded-health-detail.json"),
    ),
    ("degraded", "tree", fixture!("degraded-osd-tree.json")),
    ("degraded", "pgstat", fixture!("degraded-pg-stat.json")),
    (
        "osd-restarted",
        "status",
        fixture!("osd-restarted-status.json"),
    ),
    (
        "osd-restarted",
        "health",
        fixture!("osd-restarted-health-detail.json"),
    ),
    (
        "osd-restarted",
        "tree",
        fixture!("osd-restarted-osd-tree.json"),
    ),
    (
        "osd-restarted",
        "pgstat",
        fixture!("osd-restarted-pg-stat.json"),
    ),
    ("recovering", "status", fixture!("recovering-status.json")),
    (
        "recovering",
        "health",
        fixture!("recovering-health-detail.json"),
    ),
    ("recovering", "tree", fixture!("recovering-osd-tree.json")),
    ("recovering", "pgstat", fixture!("recovering-pg-stat.json")),
    ("recovered", "status", fixture!("recovered-status.json")),
    (
        "recovered",
        "health",
        fixture!("recovered-health-detail.json"),
    ),
    ("recovered", "tree", fixture!("recovered-osd-tree.json")),
    ("recovered", "pgstat", fixture!("recovered-pg-stat.json")),
    ("osd-out", "status", fixture!("osd-out-status.json")),
    ("osd-out", "health", fixture!("osd-out-health-detail.json")),
    ("osd-out", "tree", fixture!("osd-out-osd-tree.json")),
    ("osd-out", "pgstat", fixture!("osd-out-pg-stat.json")),
    (
        "osd-in-peering",
        "status",
        fixture!("osd-in-peering-status.json"),
    ),
    (
        "osd-in-peering",
        "health",
        fixture!("osd-in-peering-health-detail.json"),
    ),
    (
        "osd-in-peering",
        "tree",
        fixture!("osd-in-peering-osd-tree.json"),
    ),
    (
        "osd-in-peering",
        "pgstat",
        fixture!("osd-in-peering-pg-stat.json"),
    ),
    (
        "healthok-but-peering",
        "status",
        fixture!("healthok-but-peering-status.json"),
    ),
    (
        "healthok-but-peering",
        "health",
        fixture!("healthok-but-peering-health-detail.json"),
    ),
    (
        "healthok-but-peering",
        "pgstat",
        fixture!("healthok-but-peering-pg-stat.json"),
    ),
];

/// A drill like the lab's, on the documented stack, with osd.2 as the victim: stopped at
/// 10 s, `writes` objects written to nvme-pool once its PGs have re-peered, started 10 s
/// later. Returns the model and the restart time.
fn drill(params: CephParams, writes: u64) -> (CephModel, f64) {
    let write_at = 11.0 + 1.5 * params.peering_time.as_secs_f64() + 1.0;
    let mut m = CephModel::documented_stack(42, params);
    m.set_osd_running(2, false, s(10.0)).unwrap();
    if writes > 0 {
        let n = m
            .write_objects("nvme-pool", writes, 65536, s(write_at))
            .unwrap();
        assert_eq!(
            n, writes,
            "writes to an undersized but active pool go through"
        );
    }
    let restart = write_at + 10.0;
    m.set_osd_running(2, true, s(restart)).unwrap();
    (m, restart)
}

fn slow_recovery() -> CephParams {
    CephParams {
        recovery_objects_per_sec: 50.0,
        ..CephParams::realistic()
    }
}

/// The model put in the state each capture was taken in.
fn state(name: &str) -> CephModel {
    match name {
        "healthy" => {
            let mut m = stack();
            m.advance(s(10.0));
            m
        }
        "osd-down" | "osd-down-stale" => {
            let mut m = stack();
            m.set_osd_running(2, false, s(10.0)).unwrap();
            m.advance(s(11.2));
            m
        }
        "peering" => {
            // Peering that lasts longer than mon_pg_stuck_threshold gets reported.
            let mut m = CephModel::documented_stack(
                42,
                CephParams {
                    peering_time: s(120.0),
                    ..CephParams::realistic()
                },
            );
            m.set_osd_running(2, false, s(10.0)).unwrap();
            m.advance(s(81.0));
            m
        }
        "degraded" => {
            let mut m = stack();
            m.set_osd_running(2, false, s(10.0)).unwrap();
            m.write_objects("nvme-pool", 2000, 65536, s(20.0)).unwrap();
            m
        }
        "osd-restarted" => {
            let (mut m, t0) = drill(slow_recovery(), 5000);
            m.advance(s(t0 + 7.0));
            m
        }
        "recovering" => {
            let (mut m, t0) = drill(slow_recovery(), 5000);
            m.advance(s(t0 + 15.0));
            m
        }
        "recovered" => {
            let (mut m, t0) = drill(slow_recovery(), 5000);
            let mut t = t0;
            while !(m.all_pgs_active_clean() && m.health_status() == HealthStatus::Ok) {
                t += 0.25;
                assert!(t < 1000.0, "never recovered");
                m.advance(s(t));
            }
            m
        }
        "osd-out" => {
            let mut m = stack();
            m.osd_out(2, s(10.0)).unwrap();
            m.advance(s(14.0));
            m
        }
        "osd-in-peering" => {
            let (mut m, t0) = drill(
                CephParams {
                    peering_time: s(120.0),
                    ..slow_recovery()
                },
                5000,
            );
            // Booted at t0 + 3 s; PGs peer for 60..180 s.
            m.advance(s(t0 + 103.0));
            m
        }
        "healthok-but-peering" => {
            let (mut m, t0) = drill(slow_recovery(), 5000);
            let mut t = t0;
            loop {
                t += 0.2;
                assert!(t < 1000.0, "never HEALTH_OK while peering");
                m.advance(s(t));
                // The end of recovery: the last PGs re-peer to take their recovered
                // replica back into the acting set, while the rates still show.
                if m.health_status() == HealthStatus::Ok
                    && m.pg_states().keys().any(|k| k.contains("peering"))
                    && m.status_json()["pgmap"]
                        .get("recovering_objects_per_sec")
                        .is_some()
                {
                    return m;
                }
            }
        }
        other => panic!("no state {other}"),
    }
}

#[test]
fn outputs_have_every_key_path_of_the_real_captures() {
    let mut failures = Vec::new();
    let mut states: Vec<&str> = FIXTURES.iter().map(|f| f.0).collect();
    states.dedup();
    for st in states {
        let m = state(st);
        for (_, cmd, text) in FIXTURES.iter().filter(|f| f.0 == st) {
            let ours = match *cmd {
                "status" => m.status_json(),
                "health" => m.health_detail_json(),
                "tree" => m.osd_tree_json(),
                _ => m.pg_stat_json(),
            };
            let missing = missing_paths(text, &ours);
            if !missing.is_empty() {
                failures.push(format!("{st} {cmd}: missing {missing:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn fixture_states_mean_what_their_names_say() {
    let m = state("osd-down");
    assert_eq!(m.status_json()["osdmap"]["num_up_osds"], 5);
    assert!(check_names(&m).contains(&"OSD_DOWN".to_string()));

    let m = state("peering");
    let checks = m.health_checks();
    let avail = check(&checks, "PG_AVAILABILITY").expect("stuck peering reported");
    assert!(avail.message.starts_with("Reduced data availability: "));
    assert!(avail.message.contains("pgs peering"), "{}", avail.message);
    assert!(
        avail.detail[0].contains("is stuck peering for"),
        "{:?}",
        avail.detail
    );

    let m = state("degraded");
    let st = m.status_json();
    assert!(st["pgmap"]["degraded_objects"].as_u64().unwrap() > 0);
    assert!(st["pgmap"]["write_op_per_sec"].as_u64().unwrap() > 0);

    let m = state("osd-restarted");
    assert_eq!(m.status_json()["osdmap"]["num_up_osds"], 6);
    assert!(check_names(&m).contains(&"PG_DEGRADED".to_string()));

    let m = state("recovering");
    let states = m.pg_states();
    assert!(
        states
            .keys()
            .any(|k| k.contains("recovering") || k.contains("recovery_wait")),
        "{states:?}"
    );

    let m = state("recovered");
    assert_eq!(m.health_status(), HealthStatus::Ok);
    assert!(m.status_json()["pgmap"]["recovering_objects_per_sec"].is_u64());

    let m = state("osd-out");
    let st = m.status_json();
    assert_eq!(st["osdmap"]["num_in_osds"], 5);
    assert!(st["pgmap"]["misplaced_objects"].as_u64().unwrap() > 0);
    assert_eq!(m.health_status(), HealthStatus::Ok, "{:?}", check_names(&m));

    let m = state("osd-in-peering");
    let checks = m.health_checks();
    let avail = check(&checks, "PG_AVAILABILITY").unwrap();
    assert!(avail.message.contains("inactive") && avail.message.contains("peering"));

    let m = state("healthok-but-peering");
    assert!(
        m.status_json()["pgmap"]["inactive_pgs_ratio"]
            .as_f64()
            .unwrap()
            > 0.0
    );
}

// ----- drills -----

#[test]
fn stopped_osd_goes_down_degrades_then_peers_and_recovers() {
    let mut m = stack();
    m.advance(s(10.0));
    assert_eq!(m.health_status(), HealthStatus::Ok);
    assert!(m.all_pgs_active_clean());

    // osd.3: the hdd OSD of dirqual2; every hdd-pool PG has a replica there.
    m.set_osd_running(3, false, s(10.0)).unwrap();
    m.advance(s(10.5));
    assert!(m.osd(3).unwrap().is_up(), "not yet noticed");
    assert!(
        m.pool_io_blocked("hdd-pool"),
        "I/O hangs on the dead replica"
    );
    m.advance(s(11.5));
    assert!(!m.osd(3).unwrap().is_up());
    let checks = m.health_checks();
    assert_eq!(check(&checks, "OSD_DOWN").unwrap().message, "1 osds down");
    assert_eq!(
        check(&checks, "OSD_DOWN").unwrap().detail,
        vec!["osd.3 (root=default,host=dirqual2) is down".to_string()]
    );

    m.advance(s(20.0));
    let hdd = pool_states(&m, 3);
    assert!(
        hdd.iter().all(|st| st == "active+undersized+degraded"),
        "{hdd:?}"
    );
    assert!(!m.pool_io_blocked("hdd-pool"), "2 replicas >= min_size 2");
    assert!(m.pool_active("hdd-pool"));
    let checks = m.health_checks();
    assert_eq!(m.health_status(), HealthStatus::Warn);
    let deg = check(&checks, "PG_DEGRADED").unwrap();
    assert!(
        deg.message.starts_with("Degraded data redundancy: ")
            && deg.message.contains("objects degraded (")
            && deg.message.contains("pgs degraded"),
        "{}",
        deg.message
    );
    assert!(!deg.message.contains("undersized"), "not stuck yet");
    assert!(
        deg.detail
            .iter()
            .any(|d| d.starts_with("pg 3.0 is active+undersized+degraded, acting [")),
        "{:?}",
        deg.detail
    );

    // Undersized for longer than mon_pg_stuck_threshold (60 s): also reported.
    m.advance(s(80.0));
    let checks = m.health_checks();
    let deg = check(&checks, "PG_DEGRADED").unwrap();
    assert!(deg.message.contains("pgs undersized"), "{}", deg.message);

    m.set_osd_running(3, true, s(100.0)).unwrap();
    m.advance(s(103.5));
    assert!(m.osd(3).unwrap().is_up());
    assert!(!check_names(&m).contains(&"OSD_DOWN".to_string()));
    assert!(
        pool_states(&m, 3).iter().any(|st| st.contains("peering")),
        "{:?}",
        m.pg_states()
    );
    m.advance(s(130.0));
    assert_eq!(
        m.health_status(),
        HealthStatus::Ok,
        "{:?}",
        m.health_checks()
    );
    assert!(m.all_pgs_active_clean(), "{:?}", m.pg_states());
}

#[test]
fn down_past_the_interval_is_marked_out_and_backfilled_while_still_down() {
    let mut m = stack();
    m.set_osd_running(2, false, s(10.0)).unwrap();
    m.advance(s(11.0 + 599.0));
    assert!(
        m.osd(2).unwrap().is_in(),
        "not before mon_osd_down_out_interval"
    );
    let degraded_before = m.degraded_objects().0;
    assert!(degraded_before > 0);

    m.advance(s(11.0 + 600.5));
    assert!(!m.osd(2).unwrap().is_in(), "marked out automatically");
    assert!(!m.osd(2).unwrap().is_up());
    // Out OSDs are not reported down any more.
    assert!(!check_names(&m).contains(&"OSD_DOWN".to_string()));

    // Backfill at the configured rate: degraded copies only ever decrease.
    let mut last = m.degraded_objects().0;
    let mut t = 611.5;
    let mut saw_backfill = false;
    while !m.all_pgs_active_clean() {
        t += 0.5;
        assert!(t < 700.0, "backfill never finished: {:?}", m.pg_states());
        m.advance(s(t));
        let d = m.degraded_objects().0;
        assert!(d <= last, "degraded went up: {last} -> {d}");
        last = d;
        saw_backfill |= m.pg_states().keys().any(|k| k.contains("backfill"));
    }
    assert!(saw_backfill);
    // nvme-pool had ~2/3 of 2 400 objects on osd.2, backfilled at 300 objects/s.
    assert!(t - 611.0 >= 4.0, "faster than the rate allows: {t}");
    assert_eq!(
        m.health_status(),
        HealthStatus::Ok,
        "{:?}",
        m.health_checks()
    );
    assert!(
        !m.osd(2).unwrap().is_up(),
        "clean while the OSD is still down"
    );
    for pg in m.pg_summaries() {
        assert!(!pg.acting.contains(&2));
    }
}

#[test]
fn noout_keeps_a_down_osd_in_and_is_reported() {
    let mut m = stack();
    let (out, err, code) = run_ceph_command(&mut m, &args("ceph osd set noout"), s(5.0));
    assert_eq!(
        (out.as_str(), err.as_str(), code),
        ("", "noout is set\n", 0)
    );
    m.set_osd_running(2, false, s(10.0)).unwrap();
    m.advance(s(3000.0));
    assert!(m.osd(2).unwrap().is_in());
    let checks = m.health_checks();
    let flags = check(&checks, "OSDMAP_FLAGS").unwrap();
    assert_eq!(flags.message, "noout flag(s) set");
    assert!(m.status_text().contains("         flags noout\n"));
    assert!(pool_states(&m, 2)
        .iter()
        .any(|st| st == "active+undersized+degraded"));
    // Unset: the interval has long passed, so out at once.
    m.unset_flag("noout", s(3001.0)).unwrap();
    m.advance(s(3001.1));
    assert!(!m.osd(2).unwrap().is_in());
}

#[test]
fn size_one_pool_blocks_when_its_osd_is_down() {
    let mut m = stack();
    m.create_pool("scratch", 1, 1, 8, Some(DeviceClass::Nvme), "rbd", s(1.0))
        .unwrap();
    m.advance(s(10.0));
    let scratch = m.pool_by_name("scratch").unwrap().id;
    assert!(pool_states(&m, scratch)
        .iter()
        .all(|st| st == "active+clean"));
    let checks = m.health_checks();
    assert_eq!(
        check(&checks, "POOL_NO_REDUNDANCY").unwrap().message,
        "1 pool(s) have no replicas configured"
    );
    assert_eq!(m.write_objects("scratch", 80, 4096, s(10.0)).unwrap(), 80);
    m.set_flag("noout", s(11.0)).unwrap();

    m.set_osd_running(0, false, s(20.0)).unwrap();
    m.advance(s(25.0));
    let states = pool_states(&m, scratch);
    assert!(
        states.iter().any(|st| st.starts_with("stale+")),
        "{states:?}"
    );
    assert!(!m.pool_active("scratch"));
    assert!(m.pool_io_blocked("scratch"));
    assert!(m.pool_blocked_ratio("scratch") > 0.0 && m.pool_blocked_ratio("scratch") < 1.0);
    assert!(m.write_objects("scratch", 80, 4096, s(25.0)).unwrap() < 80);
    assert!(
        !m.pool_io_blocked("nvme-pool"),
        "size 2 min_size 1 keeps going"
    );

    // Stale for longer than mon_pg_stuck_threshold: reduced availability.
    m.advance(s(90.0));
    let checks = m.health_checks();
    let avail = check(&checks, "PG_AVAILABILITY").unwrap();
    assert!(
        avail.message.starts_with("Reduced data availability: ") && avail.message.contains("stale"),
        "{}",
        avail.message
    );
    assert_eq!(m.health_status(), HealthStatus::Warn);

    // Marked out: the PG maps to an OSD without the data and is down.
    m.unset_flag("noout", s(700.0)).unwrap();
    m.advance(s(710.0));
    assert!(!m.osd(0).unwrap().is_in());
    assert!(pool_states(&m, scratch).iter().any(|st| st == "down"));
    assert!(m.pool_io_blocked("scratch"));

    // Back: auto-marked in (it was auto-marked out), the data is there again.
    m.set_osd_running(0, true, s(720.0)).unwrap();
    m.advance(s(800.0));
    assert!(m.osd(0).unwrap().is_in());
    assert!(!m.pool_io_blocked("scratch"), "{:?}", m.pg_states());
    assert!(m.all_pgs_active_clean(), "{:?}", m.pg_states());
}

#[test]
fn size_three_pool_below_min_size_is_peered_not_active() {
    let mut m = stack();
    m.set_flag("noout", s(1.0)).unwrap();
    m.set_osd_running(1, false, s(10.0)).unwrap();
    m.set_osd_running(3, false, s(10.0)).unwrap();
    m.advance(s(20.0));
    let hdd = pool_states(&m, 3);
    assert!(
        hdd.iter().all(|st| st == "undersized+degraded+peered"),
        "{hdd:?}"
    );
    assert!(m.pool_io_blocked("hdd-pool"));
    m.advance(s(90.0));
    let checks = m.health_checks();
    let avail = check(&checks, "PG_AVAILABILITY").unwrap();
    assert!(
        avail.message.contains("32 pgs inactive"),
        "{}",
        avail.message
    );
}

#[test]
fn degraded_objects_fall_monotonically_during_recovery() {
    let (mut m, t0) = drill(slow_recovery(), 5000);
    let mut last = u64::MAX;
    let mut t = t0;
    let mut saw_async = false;
    while !m.all_pgs_active_clean() {
        t += 0.5;
        assert!(t < 1000.0);
        m.advance(s(t));
        let d = m.degraded_objects().0;
        if t > t0 + 4.0 {
            assert!(d <= last, "{last} -> {d} at {t}");
        }
        last = d;
        saw_async |= m
            .pg_states()
            .keys()
            .any(|k| k.contains("recovery_wait+undersized+degraded+remapped"));
    }
    assert_eq!(last, 0);
    assert!(saw_async, "far-behind replicas recover asynchronously");
}

#[test]
fn whole_host_down_and_min_in_ratio() {
    let mut m = stack();
    m.set_osd_running(2, false, s(10.0)).unwrap();
    m.set_osd_running(3, false, s(10.0)).unwrap();
    m.advance(s(15.0));
    let checks = m.health_checks();
    let host = check(&checks, "OSD_HOST_DOWN").unwrap();
    assert_eq!(host.message, "1 host (2 osds) down");
    assert_eq!(
        host.detail,
        vec!["host dirqual2 (root=default) (2 osds) is down".to_string()]
    );
    assert_eq!(check(&checks, "OSD_DOWN").unwrap().message, "2 osds down");

    // A third OSD down: after the interval only two are marked out (in ratio 4/6 < 0.75).
    m.set_osd_running(4, false, s(15.0)).unwrap();
    m.advance(s(2000.0));
    assert_eq!(m.osds().filter(|o| o.is_in()).count(), 4);
}

#[test]
fn osd_out_of_a_running_osd_backfills_misplaced_then_in_again() {
    let mut m = stack();
    let (_, err, code) = run_ceph_command(&mut m, &args("ceph osd out 2"), s(10.0));
    assert_eq!((err.as_str(), code), ("marked out osd.2. \n", 0));
    let (_, err, code) = run_ceph_command(&mut m, &args("ceph osd out osd.2"), s(10.5));
    assert_eq!((err.as_str(), code), ("osd.2 is already out. \n", 0));
    m.advance(s(13.5));
    assert_eq!(
        m.degraded_objects().0,
        0,
        "no copy is missing, only misplaced"
    );
    assert!(m.misplaced_objects().0 > 0);
    let tree = m.osd_tree_json();
    let osd2 = tree["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == 2)
        .unwrap();
    assert_eq!(osd2["reweight"], 0);
    assert_eq!(osd2["status"], "up");
    m.advance(s(60.0));
    assert!(m.all_pgs_active_clean(), "{:?}", m.pg_states());
    assert_eq!(m.misplaced_objects().0, 0);
    let (_, err, _) = run_ceph_command(&mut m, &args("ceph osd in 2"), s(61.0));
    assert_eq!(err, "marked in osd.2. \n");
    m.advance(s(120.0));
    assert!(m.all_pgs_active_clean());
    assert!(m.pg_summaries().iter().any(|p| p.acting.contains(&2)));
}

// ----- outputs -----

#[test]
fn plain_status_has_the_usual_lines() {
    let mut m = stack();
    m.set_osd_running(2, false, s(10.0)).unwrap();
    let (out, err, code) = run_ceph_command(&mut m, &args("ceph -s"), s(20.0));
    assert_eq!((err.as_str(), code), ("", 0));
    assert!(out.starts_with("  cluster:\n    id:     "), "{out}");
    assert!(
        out.contains("    health: HEALTH_WARN\n            1 osds down\n"),
        "{out}"
    );
    assert!(
        out.contains("    mon: 3 daemons, quorum a,b,c (age 20s)\n"),
        "{out}"
    );
    assert!(
        out.contains("    osd: 6 osds: 5 up (since 9s), 6 in (since 20s)\n"),
        "{out}"
    );
    assert!(out.contains("    pools:   3 pools, 65 pgs\n"), "{out}");
    assert!(out.contains("    pgs:     "), "{out}");
    assert!(out.contains("objects degraded ("), "{out}");
    let (out2, _, _) = run_ceph_command(&mut m, &args("ceph status"), s(20.0));
    assert_eq!(out, out2);

    let text = m.health_text(true);
    assert!(text.starts_with("HEALTH_WARN 1 osds down; Degraded data redundancy: "));
    assert!(text.contains(
        "\n[WRN] OSD_DOWN: 1 osds down\n    osd.2 (root=default,host=dirqual2) is down\n"
    ));
    let tree = m.osd_tree_text();
    assert!(tree.starts_with("ID  CLASS  WEIGHT    TYPE NAME"), "{tree}");
    assert!(tree.contains("host dirqual2"));
    assert!(tree
        .lines()
        .any(|l| l.contains("osd.2") && l.contains("down")));
    let pg = m.pg_stat_text();
    assert!(pg.starts_with("65 pgs: "), "{pg}");
    assert!(m.df_text().contains("--- POOLS ---"));
    assert!(m
        .osd_pool_ls_detail_text()
        .contains("pool 2 'nvme-pool' replicated size 2 min_size 1"));
}

#[test]
fn healthy_outputs_look_like_a_healthy_cluster() {
    let mut m = stack();
    m.advance(s(100.0));
    let st = m.status_json();
    assert_eq!(st["health"]["status"], "HEALTH_OK");
    assert_eq!(st["pgmap"]["pgs_by_state"][0]["state_name"], "active+clean");
    assert_eq!(st["pgmap"]["pgs_by_state"][0]["count"], 65);
    assert_eq!(st["pgmap"]["num_objects"], 8402);
    assert!(
        st["pgmap"].get("degraded_objects").is_none(),
        "absent when zero"
    );
    assert!(st["pgmap"].get("inactive_pgs_ratio").is_none());
    assert_eq!(st["osdmap"]["num_osds"], 6);
    assert_eq!(st["monmap"]["num_mons"], 3);
    assert_eq!(
        m.health_detail_json(),
        serde_json::json!({"status":"HEALTH_OK","checks":{},"mutes":[]})
    );
    assert!(m.pg_stat_text().starts_with("65 pgs: 65 active+clean; "));
    let pools = m.osd_pool_ls_detail_json();
    let names: Vec<&str> = pools
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pool_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [".mgr", "nvme-pool", "hdd-pool"]);
    let tree = m.osd_tree_json();
    let classes: Vec<(i64, &str)> = tree["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["type"] == "osd")
        .map(|n| {
            (
                n["id"].as_i64().unwrap(),
                n["device_class"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        classes,
        [
            (0, "nvme"),
            (1, "hdd"),
            (2, "nvme"),
            (3, "hdd"),
            (4, "nvme"),
            (5, "hdd")
        ]
    );
    let df = m.df_json();
    assert!(
        df["stats_by_class"]["nvme"]["total_bytes"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[test]
fn same_seed_same_story() {
    let a = state("recovering");
    let b = state("recovering");
    assert_eq!(a.status_json(), b.status_json());
    assert_eq!(a.prometheus_metrics(), b.prometheus_metrics());
    let c = CephModel::documented_stack(43, CephParams::realistic());
    assert_ne!(a.fsid(), c.fsid());
}

#[test]
fn prometheus_exposition() {
    let mut m = stack();
    m.advance(s(5.0));
    let txt = m.prometheus_metrics();
    assert!(txt.contains("# HELP ceph_health_status Cluster health status\n# TYPE ceph_health_status untyped\nceph_health_status 0.0\n"));
    assert!(txt.contains("ceph_pg_total{pool_id=\"2\"} 32.0\n"));
    assert!(txt.contains("ceph_pg_clean{pool_id=\"3\"} 32.0\n"));
    assert!(
        !txt.contains("ceph_health_detail{"),
        "no samples before a check fired"
    );
    assert!(txt.contains("ceph_osd_metadata{back_iface=\"\",ceph_daemon=\"osd.0\","));
    assert!(txt.contains("device_class=\"nvme\""));
    assert!(txt.contains("ceph_pool_metadata{pool_id=\"2\",name=\"nvme-pool\""));

    m.set_osd_running(2, false, s(10.0)).unwrap();
    m.advance(s(20.0));
    let txt = m.prometheus_metrics();
    assert!(txt.contains("ceph_health_status 1.0\n"));
    assert!(txt.contains("ceph_osd_up{ceph_daemon=\"osd.2\"} 0.0\n"));
    assert!(txt.contains("ceph_osd_in{ceph_daemon=\"osd.2\"} 1.0\n"));
    assert!(txt.contains("ceph_health_detail{name=\"OSD_DOWN\",severity=\"HEALTH_WARN\"} 1.0\n"));
    assert!(txt.contains("ceph_pg_undersized{pool_id=\"2\"}"));
    let degraded: f64 = txt
        .lines()
        .find_map(|l| l.strip_prefix("ceph_num_objects_degraded "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(degraded > 0.0);

    m.set_osd_running(2, true, s(30.0)).unwrap();
    m.advance(s(60.0));
    let txt = m.prometheus_metrics();
    assert!(txt.contains("ceph_health_status 0.0\n"));
    assert!(txt.contains("ceph_health_detail{name=\"OSD_DOWN\",severity=\"HEALTH_WARN\"} 0.0\n"));
    // Every line is a comment or `name{labels} value`.
    for l in txt.lines() {
        assert!(
            l.starts_with("# HELP ")
                || l.starts_with("# TYPE ")
                || l.rsplit_once(' ')
                    .is_some_and(|(_, v)| v.parse::<f64>().is_ok()),
            "bad line {l}"
        );
    }
}

// ----- the CLI -----

#[test]
fn cli_formats() {
    let mut m = stack();
    let (out, err, code) = run_ceph_command(&mut m, &args("ceph status -f json"), s(5.0));
    assert_eq!((err.as_str(), code), ("", 0));
    assert!(out.starts_with("\n{"), "Pacific prints a newline first");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["fsid"], m.fsid());
    let (out, _, _) = run_ceph_command(
        &mut m,
        &args("ceph --format=json-pretty health detail"),
        s(5.0),
    );
    assert!(out.contains("\n    \"status\": \"HEALTH_OK\""), "{out}");
    for cmd in [
        "ceph osd tree -f json",
        "ceph pg stat --format json",
        "ceph osd pool ls detail -f json",
        "ceph df -f json",
        "ceph health -f json",
        "ceph osd stat -f json",
        "ceph osd ls -f json",
        "ceph osd pool ls -f json",
        "osd tree -f json-pretty",
    ] {
        let (out, err, code) = run_ceph_command(&mut m, &args(cmd), s(5.0));
        assert_eq!((err.as_str(), code), ("", 0), "{cmd}");
        serde_json::from_str::<Value>(&out).unwrap_or_else(|e| panic!("{cmd}: {e}"));
    }
    let (_, err, code) = run_ceph_command(&mut m, &args("ceph -s -f bogus"), s(5.0));
    assert_eq!(code, 2);
    assert!(err.contains("invalid choice: 'bogus'"));
    let (out, _, code) =
        run_ceph_command(&mut m, &args("ceph --connect-timeout 10 health"), s(5.0));
    assert_eq!((out.as_str(), code), ("HEALTH_OK\n", 0));
}

#[test]
fn cli_errors_like_the_real_one() {
    let mut m = stack();
    let (out, err, code) = run_ceph_command(&mut m, &args("ceph osd frobnicate"), s(5.0));
    assert_eq!(code, 22);
    assert!(out.is_empty());
    assert!(
        err.starts_with("no valid command found; 10 closest matches:\nosd "),
        "{err}"
    );
    assert!(err.ends_with("Error EINVAL: invalid command\n"));
    assert_eq!(err.lines().count(), 12);

    // OSDMonitor replies 0 when nothing changed, with the reason.
    let (out, err, code) = run_ceph_command(&mut m, &args("ceph osd out 99"), s(5.0));
    assert_eq!(
        (out.as_str(), err.as_str(), code),
        ("", "osd.99 does not exist. \n", 0)
    );
    let (_, err, code) = run_ceph_command(&mut m, &args("ceph osd out"), s(5.0));
    assert_eq!(code, 22);
    assert!(err.starts_with(
        "Invalid command: missing required parameter ids(<string>)\nosd out <ids>... :  "
    ));
    let (_, err, code) = run_ceph_command(&mut m, &args("ceph osd out abc"), s(5.0));
    assert_eq!(
        (err.as_str(), code),
        ("Error EINVAL: invalid osd id-1\n", 22)
    );
    let (_, err, code) = run_ceph_command(&mut m, &args("ceph osd set nosuchflag"), s(5.0));
    assert_eq!(code, 22);
    assert!(err.starts_with("Invalid command: nosuchflag not in full|pause|noup|"));
    let (_, err, code) = run_ceph_command(&mut m, &args("ceph osd unset noout"), s(5.0));
    assert_eq!((err.as_str(), code), ("noout is unset\n", 0));
    let (_, err, code) = run_ceph_command(&mut m, &args("ceph osd set pause"), s(5.0));
    assert_eq!((err.as_str(), code), ("pauserd,pausewr is set\n", 0));
    assert!(m.pool_io_blocked("nvme-pool"));

    let (out, err, code) =
        run_ceph_command(&mut m, &args("ceph osd pool get hdd-pool size"), s(6.0));
    assert_eq!((out.as_str(), err.as_str(), code), ("size: 3\n", "", 0));
    let (out, _, _) = run_ceph_command(
        &mut m,
        &args("ceph osd pool get nvme-pool min_size -f json"),
        s(6.0),
    );
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v,
        serde_json::json!({"pool": "nvme-pool", "pool_id": 2, "min_size": 1})
    );
    let (out, _, _) = run_ceph_command(
        &mut m,
        &args("ceph osd pool get nvme-pool crush_rule"),
        s(6.0),
    );
    assert_eq!(out, "crush_rule: nvme-pool\n");
    let (_, err, code) = run_ceph_command(&mut m, &args("ceph osd pool get nope size"), s(6.0));
    assert_eq!(
        (err.as_str(), code),
        ("Error ENOENT: unrecognized pool 'nope'\n", 2)
    );
    let (_, err, code) =
        run_ceph_command(&mut m, &args("ceph osd pool get hdd-pool colour"), s(6.0));
    assert_eq!(code, 22);
    assert!(err.starts_with("Invalid command: colour not in size|min_size|"));
    let (_, err, code) =
        run_ceph_command(&mut m, &args("ceph osd pool set hdd-pool size 1"), s(6.0));
    assert_eq!(
        (err.as_str(), code),
        (
            "Error EPERM: configuring pool size as 1 is disabled by default.\n",
            1
        )
    );
    let (_, err, code) = run_ceph_command(
        &mut m,
        &args("ceph osd pool set hdd-pool min_size 3"),
        s(6.0),
    );
    assert_eq!((err.as_str(), code), ("set pool 3 min_size to 3\n", 0));
    let (out, _, code) = run_ceph_command(&mut m, &args("ceph version"), s(6.0));
    assert_eq!(
        (out.as_str(), code),
        (format!("{CEPH_VERSION}\n").as_str(), 0)
    );
}

#[test]
fn osd_down_command_bounces_a_running_osd() {
    let mut m = stack();
    let (_, err, code) = run_ceph_command(&mut m, &args("ceph osd down 4"), s(5.0));
    assert_eq!((err.as_str(), code), ("marked down osd.4. \n", 0));
    assert!(!m.osd(4).unwrap().is_up());
    m.advance(s(9.0));
    assert!(m.osd(4).unwrap().is_up(), "it boots back");
    m.advance(s(30.0));
    assert!(m.all_pgs_active_clean());
}

#[test]
fn muted_checks_do_not_count() {
    let mut m = stack();
    // Non-sticky: only a raised check can be muted.
    let (_, err, code) = run_ceph_command(&mut m, &args("ceph health mute OSD_DOWN"), s(5.0));
    assert_eq!(
        (err.as_str(), code),
        (
            "Error ENOENT: health alert OSD_DOWN is not currently raised\n",
            2
        )
    );
    for c in ["OSD_DOWN", "PG_DEGRADED"] {
        let cmd = format!("ceph health mute {c} --sticky");
        let (out, err, code) = run_ceph_command(&mut m, &args(&cmd), s(5.0));
        assert_eq!((out.as_str(), err.as_str(), code), ("", "", 0), "{cmd}");
    }
    m.set_osd_running(0, false, s(10.0)).unwrap();
    m.advance(s(40.0));
    let names = check_names(&m);
    assert!(names.contains(&"OSD_DOWN".to_string()), "{names:?}");
    assert_eq!(m.health_status(), HealthStatus::Ok, "{names:?}");
    let v: Value =
        serde_json::from_str(&run_ceph_command(&mut m, &args("ceph status -f json"), s(40.0)).0)
            .unwrap();
    assert_eq!(v["health"]["status"], "HEALTH_OK");
    assert_eq!(v["health"]["checks"]["OSD_DOWN"]["muted"], true);
    assert_eq!(v["health"]["mutes"][0]["code"], "OSD_DOWN");
    assert_eq!(v["health"]["mutes"][0]["sticky"], true);
    let (out, _, _) = run_ceph_command(&mut m, &args("ceph health detail"), s(40.0));
    assert!(
        out.starts_with("HEALTH_OK (muted: OSD_DOWN PG_DEGRADED)"),
        "{out}"
    );
    assert!(
        out.contains("[WRN] OSD_DOWN: 1 osds down (MUTED, STICKY)"),
        "{out}"
    );
    // The metric follows the status.
    assert!(m.prometheus_metrics().contains("ceph_health_status 0"));
    // Unmuted, the same cluster warns.
    run_ceph_command(&mut m, &args("ceph health unmute OSD_DOWN"), s(41.0));
    assert_eq!(m.health_status(), HealthStatus::Warn);
    // A non-sticky mute lapses when the check clears.
    let (_, err, code) = run_ceph_command(&mut m, &args("ceph health mute OSD_DOWN 1h"), s(42.0));
    assert_eq!((err.as_str(), code), ("", 0));
    m.set_osd_running(0, true, s(43.0)).unwrap();
    m.advance(s(300.0));
    assert!(!m.mutes.contains_key("OSD_DOWN"));
    assert!(m.mutes.contains_key("PG_DEGRADED"), "sticky mutes stay");
}

#[test]
fn config_options() {
    let mut m = CephModel::documented_stack(42, CephParams::fast());
    let (out, _, code) = run_ceph_command(
        &mut m,
        &args("ceph config get osd osd_heartbeat_grace"),
        s(5.0),
    );
    assert_eq!((out.as_str(), code), ("1\n", 0));
    let (_, err, code) = run_ceph_command(
        &mut m,
        &args("ceph config set osd osd_heartbeat_grace 4"),
        s(5.0),
    );
    assert_eq!((err.as_str(), code), ("", 0));
    assert_eq!(m.params.osd_heartbeat_grace, s(4.0));
    let (_, err, code) = run_ceph_command(&mut m, &args("ceph config set bogus x 1"), s(5.0));
    assert_eq!(
        (err.as_str(), code),
        ("Error EINVAL: invalid who 'bogus'\n", 22)
    );
    let (_, _, code) = run_ceph_command(
        &mut m,
        &args("ceph config set osd osd_op_queue wpq"),
        s(5.0),
    );
    assert_eq!(code, 22);
}
