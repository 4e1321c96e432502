//! Storage checks (phase 1): Ceph's health, OSDs and PGs through the toolbox, the
//! CephCluster's reported health, pool replication and device classes, and a claim's
//! round trip on a StorageClass.

use std::time::Duration;

use cucumber::then;

use super::{
    checks::{self, judge, judge_all, judge_yes, limit, threshold_of, CheckError, Unit},
    limit::{DurationLimit, Limit, LongDurationLimit},
};
use crate::{
    measure::health::LaneSample,
    probe::{
        ceph::{self, CephStatus},
        platform, storage,
    },
    verdict::{Comparison, Criterion},
    world::World,
};

/// Where probe claims are created.
const CLAIM_NAMESPACE: &str = "default";

/// 0 for HEALTH_OK, 1 for HEALTH_WARN, 2 for HEALTH_ERR (and anything unknown).
fn severity(health: &str) -> f64 {
    match health {
        "HEALTH_OK" => 0.0,
        "HEALTH_WARN" => 1.0,
        _ => 2.0,
    }
}

#[then(regex = r"^the Ceph cluster reports HEALTH_OK$")]
async fn ceph_health_ok(world: &mut World) -> Result<(), CheckError> {
    let s = ceph::status(world.client()).await?;
    health_criterion(world, "ceph_health", &s.health, || s.describe_checks())
}

fn health_criterion(
    world: &mut World,
    name: &str,
    health: &str,
    details: impl FnOnce() -> String,
) -> Result<(), CheckError> {
    // Severity 0 is HEALTH_OK, 1 HEALTH_WARN, 2 HEALTH_ERR.
    let pass = world.judge(Criterion::new(
        name,
        severity(health),
        Comparison::AtMost,
        0.0,
        "",
    ));
    if pass {
        return Ok(());
    }
    Err(CheckError::Unmet {
        expected: "HEALTH_OK".into(),
        seen: format!("{health} ({})", details()),
    })
}

/// `Ceph reports HEALTH_WARN within the profile's chaos.osd.detection_s`, or with
/// ` and every placement group is active+clean` (a real cluster reports HEALTH_OK while
/// PGs still peer, so recovery needs both). Timed from the scenario's latest fault
/// change (injection or revert); Ceph has no watch, so `ceph status` is polled through
/// the toolbox every `ceph.poll_ms` of the profile (1000). A failed poll (toolbox
/// restarting, unparseable status) is never taken as the awaited state.
#[then(
    regex = r"^Ceph reports (HEALTH_OK|HEALTH_WARN|HEALTH_ERR)( and every placement group is active\+clean)? within (the profile's [A-Za-z0-9_.]+|\d+(?:\.\d+)? ?(?:ms|milliseconds?|s|secs?|seconds?|m|mins?|minutes?|h|hours?))$"
)]
async fn ceph_reports_within(
    world: &mut World,
    health: String,
    clean: String,
    within: DurationLimit,
) -> Result<(), CheckError> {
    let want_clean = !clean.is_empty();
    let name = format!(
        "ceph_{}{}_s",
        health.to_lowercase(),
        if want_clean { "_clean" } else { "" }
    );
    let awaited = format!(
        "{health}{}",
        if want_clean {
            " and every PG active+clean"
        } else {
            ""
        }
    );
    let polls = poll_until(world, &name, &awaited, &within.0, |client| {
        let health = health.clone();
        async move {
            match ceph::status(&client).await {
                Ok(s) => {
                    let clean_ok = s.pgs_total() > 0 && s.pgs_active_clean() == s.pgs_total();
                    if s.health == health && (!want_clean || clean_ok) {
                        return Ok(());
                    }
                    Err(format!(
                        "{} ({}); {} of {} PGs active+clean{}",
                        s.health,
                        s.describe_checks(),
                        s.pgs_active_clean(),
                        s.pgs_total(),
                        if clean_ok {
                            String::new()
                        } else {
                            format!(": {}", s.describe_unclean())
                        }
                    ))
                }
                Err(e) => Err(format!("ceph status failed: {}", crate::diag::one_line(&e))),
            }
        }
    })
    .await?;
    world.measure(format!("{name}_polls"), f64::from(polls));
    Ok(())
}

/// Polls `probe` (through the toolbox) every `ceph.poll_ms` of the profile (1000)
/// until it reports the awaited state (`Ok`; `Err` says what it saw instead) or
/// `within` has passed, timed from the scenario's latest fault change (Ceph has no
/// watch). Judges `name`, the seconds from that change; a failed or late poll is
/// never the awaited state. Returns the number of polls.
async fn poll_until<F, Fut>(
    world: &mut World,
    name: &str,
    awaited: &str,
    within: &Limit,
    mut probe: F,
) -> Result<u32, CheckError>
where
    F: FnMut(kube::Client) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let lim = threshold_of(world, within, Unit::Seconds)?;
    let poll = poll_interval(world);
    let (from, since) = match world.last_fault_change {
        Some(c) => (c.at, c.what),
        None => (std::time::Instant::now(), "the step started"),
    };
    let expected = format!(
        "{awaited} within {} s after the fault was {since}",
        lim.value
    );
    let deadline = from + Duration::from_secs_f64(lim.value.max(0.0));
    let client = world.client().clone();
    let shown = crate::progress::Wait::start(
        format!("Ceph: {awaited}"),
        Some(deadline.saturating_duration_since(std::time::Instant::now())),
    );
    let mut polls = 0u32;
    loop {
        polls += 1;
        // A poll never outlives the deadline by more than one interval.
        let budget = deadline.saturating_duration_since(std::time::Instant::now()) + poll;
        let seen = match tokio::time::timeout(budget, probe(client.clone())).await {
            Ok(Ok(())) => {
                let after = checks::round3(from.elapsed().as_secs_f64());
                if judge(world, name, after, Comparison::AtMost, &lim, "s") {
                    return Ok(polls);
                }
                return Err(CheckError::Unmet {
                    expected,
                    seen: format!("it took {after} s"),
                });
            }
            Ok(Err(seen)) => seen,
            Err(_) => "Ceph did not answer before the deadline".into(),
        };
        shown.status(seen.clone());
        let now = std::time::Instant::now();
        if now >= deadline {
            let waited = checks::round3(from.elapsed().as_secs_f64());
            let mut c = Criterion::new(name, waited, Comparison::AtMost, lim.value, "s");
            if let Some(src) = &lim.source {
                c = c.with_source(src.clone());
            }
            c.pass = false;
            world.judge(c);
            return Err(CheckError::Unmet {
                expected,
                seen: format!("after {waited} s and {polls} polls: {seen}"),
            });
        }
        tokio::time::sleep(poll.min(deadline - now)).await;
    }
}

/// `Ceph marks OSD 0 out within the profile's chaos.osd.out_s`: past
/// `mon_osd_down_out_interval` a down OSD is marked out and its data re-replicated;
/// `noout`, or too few OSDs in, keeps it in. `Ceph marks OSD 1 down within ...`: the
/// monitors' own record of the failure, where HEALTH_WARN may already stand for
/// something else (the `noout` flag warns by itself). Timed from the scenario's latest
/// fault change; `ceph osd tree` polled every `ceph.poll_ms`.
#[then(
    regex = r"^Ceph marks OSD (\d+) (down|out) within (the profile's [A-Za-z0-9_.]+|\d+(?:\.\d+)? ?(?:ms|milliseconds?|s|secs?|seconds?|m|mins?|minutes?|h|hours?))$"
)]
async fn osd_marked_within(
    world: &mut World,
    id: i64,
    state: String,
    within: DurationLimit,
) -> Result<(), CheckError> {
    let name = format!("osd_{state}_s[osd.{id}]");
    let awaited = format!("osd.{id} marked {state}");
    let want_out = state == "out";
    poll_until(world, &name, &awaited, &within.0, |client| async move {
        match ceph::osd_tree(&client).await {
            Ok(osds) => match osds.iter().find(|o| o.id == id) {
                Some(o) if (want_out && !o.in_) || (!want_out && !o.up) => Ok(()),
                Some(o) => Err(format!(
                    "osd.{id} is {} and {}",
                    if o.up { "up" } else { "down" },
                    if o.in_ { "in" } else { "out" }
                )),
                None => Err(format!("the OSD map has no osd.{id}")),
            },
            Err(e) => Err(format!(
                "ceph osd tree failed: {}",
                crate::diag::one_line(&e)
            )),
        }
    })
    .await
    .map(drop)
}

/// The profile's `ceph.poll_ms` (1000), at least 50 ms.
fn poll_interval(world: &World) -> Duration {
    let ms = world
        .context()
        .profile
        .as_ref()
        .and_then(|p| p.number("ceph.poll_ms"))
        .unwrap_or(1000.0)
        .max(50.0);
    Duration::from_millis(ms as u64)
}

/// Judges the Ceph health lane the scenario's health recorder kept while the load ran
/// (`ceph status` every 2 s): HEALTH_ERR at any reading fails; a lane never read fails
/// too, never passes by default.
#[then(regex = r"^Ceph never reported HEALTH_ERR during the scenario$")]
async fn ceph_never_err(world: &mut World) -> Result<(), CheckError> {
    use crate::measure::health::{LaneState, LANE_CEPH};
    let worst = world.health.as_ref().map(|h| h.worst(LANE_CEPH));
    let (yes, seen) = match worst {
        None => (
            false,
            "no health was recorded: start a load first (`Given the API receives N requests \
             per second`)"
                .to_owned(),
        ),
        Some(None)
        | Some(Some(LaneSample {
            state: LaneState::Unknown,
            ..
        })) => (false, "Ceph's health was never read".to_owned()),
        Some(Some(s)) => (
            s.state != LaneState::Bad,
            format!("worst reading {} at t = {:.1} s", s.detail, s.t_s),
        ),
    };
    if judge_yes(world, "ceph_never_health_err", yes) {
        return Ok(());
    }
    Err(CheckError::Unmet {
        expected: "no HEALTH_ERR reading during the scenario".into(),
        seen,
    })
}

/// `every OSD is up and in within LIMIT`: a returning OSD boots, is marked up, and in
/// again if Ceph marked it out (`mon_osd_auto_mark_auto_out_in`). Polled with `ceph
/// status`, timed from the latest fault change; criterion `osds_up_in_s`.
#[then(expr = "every OSD is up and in within {limit}")]
async fn osds_up_and_in_within(world: &mut World, within: DurationLimit) -> Result<(), CheckError> {
    poll_until(
        world,
        "osds_up_in_s",
        "every OSD up and in",
        &within.0,
        |client| async move {
            match ceph::status(&client).await {
                Ok(s) if s.osds > 0 && s.osds_up == s.osds && s.osds_in == s.osds => Ok(()),
                Ok(s) => Err(format!(
                    "{} of {} OSDs up, {} in",
                    s.osds_up, s.osds, s.osds_in
                )),
                Err(e) => Err(format!("ceph status failed: {}", crate::diag::one_line(&e))),
            }
        },
    )
    .await
    .map(drop)
}

#[then(regex = r"^every OSD is up and in$")]
async fn osds_up_and_in(world: &mut World) -> Result<(), CheckError> {
    let s: CephStatus = ceph::status(world.client()).await?;
    let total = s.osds as usize;
    let up = judge_all(world, "osds_up", s.osds_up as usize, total, "OSDs");
    let inn = judge_all(world, "osds_in", s.osds_in as usize, total, "OSDs");
    if up && inn {
        return Ok(());
    }
    Err(CheckError::Unmet {
        expected: "every OSD up and in".into(),
        seen: format!(
            "{} of {} OSDs are up and {} in",
            s.osds_up, s.osds, s.osds_in
        ),
    })
}

#[then(regex = r"^every placement group is active\+clean$")]
async fn pgs_active_clean(world: &mut World) -> Result<(), CheckError> {
    let s = ceph::status(world.client()).await?;
    let (clean, total) = (s.pgs_active_clean(), s.pgs_total());
    if judge_all(
        world,
        "pgs_active_clean",
        clean as usize,
        total as usize,
        "PGs",
    ) {
        return Ok(());
    }
    Err(CheckError::Unmet {
        expected: "every placement group active+clean".into(),
        seen: format!("{clean} of {total} are; {}", s.describe_unclean()),
    })
}

#[then(regex = r#"^the CephCluster "([^"]+)" in namespace "([^"]+)" reports HEALTH_OK$"#)]
async fn cephcluster_health_ok(
    world: &mut World,
    name: String,
    namespace: String,
) -> Result<(), CheckError> {
    let cluster = ceph::rook_object(world.client(), "CephCluster", &namespace, &name)
        .await?
        .ok_or_else(|| CheckError::Unmet {
            expected: format!("CephCluster {namespace}/{name}"),
            seen: "it does not exist".into(),
        })?;
    let health = ceph::cephcluster_health(&cluster).unwrap_or("no status.ceph.health");
    let details = cluster
        .pointer("/status/ceph/details")
        .and_then(serde_json::Value::as_object)
        .map(|d| {
            d.iter()
                .map(|(k, v)| format!("{k}: {}", v["message"].as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join("; ")
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "no details".into());
    health_criterion(
        world,
        &format!("cephcluster_health[{namespace}/{name}]"),
        health,
        || details,
    )
}

#[then(regex = r#"^pool "([^"]+)" is replicated (\d+) times(?: on device class "([^"]+)")?$"#)]
async fn pool_replicated(
    world: &mut World,
    pool: String,
    size: u64,
    device_class: String,
) -> Result<(), CheckError> {
    let client = world.client().clone();
    // Ceph's own pool, not only the CephBlockPool's wish: the operator may lag or fail.
    let pools = ceph::pools(&client).await?;
    let actual = pools.iter().find(|p| p.name == pool);
    let kind = world
        .context()
        .catalog
        .resolve(&client, "cephblockpool.ceph.rook.io")
        .await?;
    let declared = platform::list(&client, &kind, None)
        .await?
        .into_iter()
        .find(|o| platform::name(o) == pool);
    let size_ok = world.judge(Criterion::new(
        format!("pool_size[{pool}]"),
        actual.map_or(f64::NAN, |p| p.size as f64),
        Comparison::Equal,
        size as f64,
        "replicas",
    ));
    let mut problems = Vec::new();
    if !size_ok {
        problems.push(match actual {
            Some(p) => format!("Ceph keeps {} replicas of {pool}", p.size),
            None => format!(
                "Ceph has no pool {pool} (pools: {})",
                checks::list(pools.iter().map(|p| p.name.clone()), 10)
            ),
        });
    }
    if !device_class.is_empty() {
        let (_, class) = declared
            .as_ref()
            .map_or((None, None), |o| ceph::blockpool_spec(o));
        let class_ok = judge_yes(
            world,
            format!("pool_device_class[{pool}]"),
            class == Some(device_class.as_str()),
        );
        if !class_ok {
            problems.push(match (&declared, class) {
                (None, _) => format!("there is no CephBlockPool {pool}"),
                (Some(_), Some(c)) => format!("CephBlockPool {pool} is on device class {c}"),
                (Some(_), None) => format!("CephBlockPool {pool} names no device class"),
            });
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    let what = if device_class.is_empty() {
        format!("pool {pool} replicated {size} times")
    } else {
        format!("pool {pool} replicated {size} times on device class {device_class}")
    };
    Err(CheckError::Unmet {
        expected: what,
        seen: problems.join("; "),
    })
}

#[then(
    regex = r#"^a (\d+(?:Mi|Gi|Ti)) claim on storage class "([^"]+)" is bound within (the profile's [A-Za-z0-9_.]+|\d+(?:\.\d+)? ?(?:ms|milliseconds?|s|secs?|seconds?|m|mins?|minutes?|h|hours?|d|days?))(?: and cleaned up within (the profile's [A-Za-z0-9_.]+|\d+(?:\.\d+)? ?(?:ms|milliseconds?|s|secs?|seconds?|m|mins?|minutes?|h|hours?|d|days?)))?$"#
)]
async fn claim_binds(
    world: &mut World,
    size: String,
    class: String,
    bind: LongDurationLimit,
    cleanup: String,
) -> Result<(), CheckError> {
    let bind = threshold_of(world, &bind.0, Unit::Seconds)?;
    let cleanup = (!cleanup.is_empty())
        .then(|| limit(world, &cleanup, Unit::Seconds))
        .transpose()?;
    let secs = |s: f64| Duration::from_secs_f64(s.max(0.0));
    let r = storage::claim_round_trip(
        world.client(),
        CLAIM_NAMESPACE,
        &class,
        &size,
        secs(bind.value),
        secs(cleanup.as_ref().map_or(bind.value, |c| c.value)),
    )
    .await?;
    let bound_s = r
        .bound_after
        .map_or(f64::NAN, |d| checks::round3(d.as_secs_f64()));
    let mut problems = Vec::new();
    if !judge(
        world,
        format!("claim_bound_s[{class}]"),
        bound_s,
        Comparison::AtMost,
        &bind,
        "s",
    ) {
        problems.push(format!(
            "claim {} was not Bound within {}s ({})",
            r.claim,
            bind.value,
            r.pending_why.as_deref().unwrap_or("Pending")
        ));
    }
    if let Some(cleanup) = &cleanup {
        let cleaned_s = r
            .cleaned_after
            .map_or(f64::NAN, |d| checks::round3(d.as_secs_f64()));
        if !judge(
            world,
            format!("claim_cleanup_s[{class}]"),
            cleaned_s,
            Comparison::AtMost,
            cleanup,
            "s",
        ) {
            problems.push(format!(
                "the claim's storage was not gone within {}s ({}; the harness deleted it)",
                cleanup.value,
                r.leftover.as_deref().unwrap_or("still there")
            ));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    Err(CheckError::Unmet {
        expected: format!("a {size} claim on storage class {class} to bind and be cleaned up"),
        seen: problems.join("; "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn severities() {
        assert_eq!(severity("HEALTH_OK"), 0.0);
        assert_eq!(severity("HEALTH_WARN"), 1.0);
        assert_eq!(severity("HEALTH_ERR"), 2.0);
        assert_eq!(severity("no status.ceph.health"), 2.0);
    }
}
