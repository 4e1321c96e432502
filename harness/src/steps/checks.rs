//! What the phase checks' steps (`ceph`, `http`, `observability`, `platform`) share:
//! their error, thresholds written inline or named from the acceptance profile, and
//! recording criteria with the threshold's source.
//!
//! A limit is written `60 seconds`, `26 hours`, `15 days`, `2`, or
//! `the profile's storage.claim_bind_s` (read by [`super::limit`]); a profile key
//! carries its unit in its suffix (`_ms`, `_s`, `_min`, `_h`, `_d`; none for counts),
//! and a key the profile lacks is an error naming the key and the file.

use super::limit::{self, unit_word_seconds, Limit, Units, PROFILE_PREFIX};
use crate::{
    config::{threshold, ThresholdError},
    diag,
    probe::{
        api::ApiDiscoveryError, ceph::CephProbeError, dns::DnsProbeError, grafana::GrafanaError,
        harbor::HarborError, http::HttpProbeError, k8s::ProbeError, loki::LokiError,
        prom::PromError, storage::StorageError, svc::ProxyError,
    },
    verdict::{Comparison, Criterion},
    world::World,
};

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{}", diag::one_line(.0))]
    Threshold(#[from] ThresholdError),
    #[error("cannot read the limit {text:?}: {why}")]
    Limit { text: String, why: String },
    #[error("{}", diag::one_line(.0))]
    K8s(#[from] ProbeError),
    #[error("{}", diag::one_line(.0))]
    Ceph(#[from] CephProbeError),
    #[error("{}", diag::one_line(.0))]
    Dns(#[from] DnsProbeError),
    #[error("{}", diag::one_line(.0))]
    Proxy(#[from] ProxyError),
    #[error("{}", diag::one_line(.0))]
    Prom(#[from] PromError),
    #[error("{}", diag::one_line(.0))]
    Loki(#[from] LokiError),
    #[error("{}", diag::one_line(.0))]
    Grafana(#[from] GrafanaError),
    #[error("{}", diag::one_line(.0))]
    Harbor(#[from] HarborError),
    #[error("{}", diag::one_line(.0))]
    Http(#[from] HttpProbeError),
    #[error("{}", diag::one_line(.0))]
    Storage(#[from] StorageError),
    #[error("{}", diag::one_line(.0))]
    Discovery(#[from] ApiDiscoveryError),
    #[error(
        "the cluster publishes no API endpoint (no HTTPProxy with a virtual host, or Envoy's \
         load balancer has no address yet); pass --api-url to name one"
    )]
    NoApiEndpoint,
    #[error("deploying the stack failed: {0}")]
    Stack(String),
    #[error("expected {expected}, but {seen}")]
    Unmet { expected: String, seen: String },
}

/// The unit a check judges in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Seconds,
    Hours,
    Days,
    /// A plain number (replicas, requests).
    Count,
}

impl Unit {
    fn seconds(self) -> Option<f64> {
        match self {
            Unit::Seconds => Some(1.0),
            Unit::Hours => Some(3600.0),
            Unit::Days => Some(86_400.0),
            Unit::Count => None,
        }
    }

    /// The criterion's unit text.
    pub fn symbol(self) -> &'static str {
        match self {
            Unit::Seconds => "s",
            Unit::Hours => "h",
            Unit::Days => "d",
            Unit::Count => "",
        }
    }
}

/// A limit resolved to a number in the check's unit, with its source (the profile
/// key) when it was named.
#[derive(Clone, Debug, PartialEq)]
pub struct Resolved {
    pub value: f64,
    pub source: Option<String>,
}

/// Seconds per unit of a profile key, from its suffix.
fn key_unit_seconds(key: &str) -> Option<f64> {
    let suffix = key.rsplit('_').next()?;
    match suffix {
        "min" => Some(60.0),
        other if key.contains('_') => unit_word_seconds(other),
        _ => None,
    }
}

/// Resolves `limit` into `unit`: a profile key by its suffix, a written duration from
/// its seconds, a count or percentage as it is.
pub fn resolve(
    profile: Option<&crate::config::Profile>,
    limit: &Limit,
    unit: Unit,
) -> Result<Resolved, CheckError> {
    match limit {
        Limit::Profile(key) => {
            let t = threshold::required(profile, key)?;
            let value = match (unit.seconds(), key_unit_seconds(key)) {
                (Some(per_unit), Some(per_key)) => t.value * per_key / per_unit,
                (Some(_), None) => {
                    return Err(CheckError::Limit {
                        text: format!("{PROFILE_PREFIX}{key}"),
                        why: "a duration's profile key ends with its unit (_ms, _s, _min, \
                              _h, _d)"
                            .into(),
                    })
                }
                (None, _) => t.value,
            };
            Ok(Resolved {
                value,
                source: Some(format!("profile {key}")),
            })
        }
        Limit::Value(v) => Ok(Resolved {
            value: unit.seconds().map_or(*v, |per_unit| v / per_unit),
            source: None,
        }),
    }
}

/// Resolves `text` (inline or `the profile's KEY`, read by [`limit::parse`]) into
/// `unit`.
pub fn resolve_limit(
    profile: Option<&crate::config::Profile>,
    text: &str,
    unit: Unit,
) -> Result<Resolved, CheckError> {
    let units = if unit == Unit::Count {
        Units::Count
    } else {
        Units::ANY_DURATION
    };
    let limit = limit::parse(text, units).map_err(|why| CheckError::Limit {
        text: text.to_owned(),
        why,
    })?;
    resolve(profile, &limit, unit)
}

/// [`resolve_limit`] with the run's profile.
pub fn limit(world: &World, text: &str, unit: Unit) -> Result<Resolved, CheckError> {
    resolve_limit(world.context().profile.as_ref(), text, unit)
}

/// [`resolve`] with the run's profile.
pub fn threshold_of(world: &World, limit: &Limit, unit: Unit) -> Result<Resolved, CheckError> {
    resolve(world.context().profile.as_ref(), limit, unit)
}

/// Records a criterion whose threshold is `limit`; whether it passed.
pub fn judge(
    world: &mut World,
    name: impl Into<String>,
    figure: f64,
    comparison: Comparison,
    limit: &Resolved,
    unit: &str,
) -> bool {
    let mut c = Criterion::new(name, figure, comparison, limit.value, unit);
    if let Some(s) = &limit.source {
        c = c.with_source(s.clone());
    }
    world.judge(c)
}

/// Records `figure >= threshold` (counts of good objects against all of them; no
/// objects at all counts as a failure, not a vacuous pass).
pub fn judge_all(
    world: &mut World,
    name: impl Into<String>,
    good: usize,
    total: usize,
    unit: &str,
) -> bool {
    world.judge(Criterion::new(
        name,
        good as f64,
        Comparison::AtLeast,
        total.max(1) as f64,
        unit,
    ))
}

/// Records a yes/no check as `1 == 1` (unit `bool`, as the DR steps write it).
pub fn judge_yes(world: &mut World, name: impl Into<String>, yes: bool) -> bool {
    world.judge(Criterion::new(
        name,
        if yes { 1.0 } else { 0.0 },
        Comparison::Equal,
        1.0,
        "bool",
    ))
}

/// `a, b, c, and 3 more`.
pub fn list(items: impl IntoIterator<Item = String>, limit: usize) -> String {
    let items: Vec<String> = items.into_iter().collect();
    let mut parts: Vec<String> = items.iter().take(limit).cloned().collect();
    if items.len() > limit {
        parts.push(format!("and {} more", items.len() - limit));
    }
    parts.join(", ")
}

/// Rounds for measurements (milliseconds of precision is all a probe can claim).
pub fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// The cells of a step's data table, in order, trimmed, blanks left out: the rows of a
/// one-column list, or every cell of a wider one.
pub fn table_cells(step: &cucumber::gherkin::Step) -> Result<Vec<String>, CheckError> {
    let cells: Vec<String> = step
        .table
        .as_ref()
        .map(|t| {
            t.rows
                .iter()
                .flatten()
                .map(|c| c.trim().to_owned())
                .filter(|c| !c.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if cells.is_empty() {
        return Err(CheckError::Unmet {
            expected: "a data table listing what to check (`| name |` rows)".into(),
            seen: "the step has none".into(),
        });
    }
    Ok(cells)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Profile;

    #[test]
    fn inline_limits() {
        let l = resolve_limit(None, "60 seconds", Unit::Seconds).unwrap();
        assert_eq!(
            l,
            Resolved {
                value: 60.0,
                source: None
            }
        );
        assert_eq!(
            resolve_limit(None, "26 hours", Unit::Hours).unwrap().value,
            26.0
        );
        assert_eq!(
            resolve_limit(None, "2 days", Unit::Hours).unwrap().value,
            48.0
        );
        assert_eq!(
            resolve_limit(None, "500ms", Unit::Seconds).unwrap().value,
            0.5
        );
        assert_eq!(resolve_limit(None, "3", Unit::Count).unwrap().value, 3.0);
        assert!(resolve_limit(None, "60", Unit::Seconds).is_err());
        assert!(resolve_limit(None, "3 s", Unit::Count).is_err());
        assert!(resolve_limit(None, "10 fortnights", Unit::Days).is_err());
    }

    #[test]
    fn profile_limits_convert_by_key_suffix() {
        let p = Profile::parse(
            Path::new("twin.yaml"),
            "storage:\n  claim_bind_s: {value: 30, why: ours}\nbackup:\n  max_age_h: 26\n  wait_min: 2\nrate: {requests: 150}\n",
        )
        .unwrap();
        let l = resolve_limit(
            Some(&p),
            "the profile's storage.claim_bind_s",
            Unit::Seconds,
        )
        .unwrap();
        assert_eq!(
            l,
            Resolved {
                value: 30.0,
                source: Some("profile storage.claim_bind_s".into())
            }
        );
        let h = resolve_limit(Some(&p), "the profile's backup.max_age_h", Unit::Seconds).unwrap();
        assert_eq!(h.value, 26.0 * 3600.0);
        let m = resolve_limit(Some(&p), "the profile's backup.wait_min", Unit::Seconds).unwrap();
        assert_eq!(m.value, 120.0);
        assert_eq!(
            resolve_limit(Some(&p), "the profile's rate.requests", Unit::Count)
                .unwrap()
                .value,
            150.0
        );
        let e = resolve_limit(Some(&p), "the profile's storage.nope_s", Unit::Seconds).unwrap_err();
        assert!(
            e.to_string().contains("`storage.nope_s`") && e.to_string().contains("twin.yaml"),
            "{e}"
        );
        assert!(resolve_limit(Some(&p), "the profile's rate.requests", Unit::Seconds).is_err());
        assert!(matches!(
            resolve_limit(None, "the profile's x_s", Unit::Seconds),
            Err(CheckError::Threshold(ThresholdError::NoProfile { .. }))
        ));
    }

    #[test]
    fn lists_are_bounded() {
        let l = list((0..5).map(|i| i.to_string()), 3);
        assert_eq!(l, "0, 1, 2, and 2 more");
    }
}
