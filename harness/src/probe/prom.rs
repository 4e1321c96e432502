//! Prometheus and Thanos query through the service proxy: scrape targets by job,
//! the TSDB retention, and instant queries (Thanos for times older than that
//! retention).

use kube::Client;
use serde_json::Value;

use super::svc::{self, ProxyError, ServiceRef};

/// kube-prometheus's Service in front of Prometheus `k8s`.
pub fn prometheus() -> ServiceRef {
    ServiceRef::new("monitoring", "prometheus-k8s", 9090)
}

/// The Thanos query Service (long-term metrics).
pub fn thanos() -> ServiceRef {
    ServiceRef::new("monitoring", "thanos-query", 10902)
}

#[derive(Debug, thiserror::Error)]
pub enum PromError {
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    #[error("{what}: unexpected answer: {detail}")]
    Shape { what: String, detail: String },
    #[error(
        "{what} reports no retention (neither storage.tsdb.retention.time nor storageRetention)"
    )]
    NoRetention { what: String },
    #[error("{what}: cannot read the duration {text:?}")]
    Duration { what: String, text: String },
}

/// One active scrape target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub job: String,
    pub instance: String,
    pub up: bool,
    pub last_error: String,
}

/// A job's targets: how many, how many up, and the down ones with their error.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobHealth {
    pub total: usize,
    pub up: usize,
    /// (instance, last error)
    pub down: Vec<(String, String)>,
}

fn shape(what: &str, detail: impl Into<String>) -> PromError {
    PromError::Shape {
        what: what.to_owned(),
        detail: detail.into(),
    }
}

/// `data` of a `{"status": "success", "data": ...}` answer.
fn data<'a>(what: &str, v: &'a Value) -> Result<&'a Value, PromError> {
    if v["status"] != "success" {
        return Err(shape(
            what,
            format!(
                "status {} {}",
                v["status"],
                v["error"].as_str().unwrap_or_default()
            ),
        ));
    }
    v.get("data").ok_or_else(|| shape(what, "no data"))
}

/// `/api/v1/targets`'s active targets.
pub fn parse_targets(v: &Value) -> Result<Vec<Target>, PromError> {
    let what = "Prometheus /api/v1/targets";
    let active = data(what, v)?
        .get("activeTargets")
        .and_then(Value::as_array)
        .ok_or_else(|| shape(what, "no activeTargets list"))?;
    Ok(active
        .iter()
        .map(|t| Target {
            job: t["labels"]["job"]
                .as_str()
                .or_else(|| t["discoveredLabels"]["job"].as_str())
                .unwrap_or("")
                .to_owned(),
            instance: t["labels"]["instance"].as_str().unwrap_or("").to_owned(),
            up: t["health"] == "up",
            last_error: t["lastError"].as_str().unwrap_or("").to_owned(),
        })
        .collect())
}

pub fn job_health(targets: &[Target], job: &str) -> JobHealth {
    let mut h = JobHealth::default();
    for t in targets.iter().filter(|t| t.job == job) {
        h.total += 1;
        if t.up {
            h.up += 1;
        } else {
            h.down.push((t.instance.clone(), t.last_error.clone()));
        }
    }
    h
}

/// The jobs that have targets, sorted, for "no such job" messages.
pub fn jobs(targets: &[Target]) -> Vec<String> {
    let mut j: Vec<String> = targets.iter().map(|t| t.job.clone()).collect();
    j.sort();
    j.dedup();
    j
}

/// A Prometheus duration (`15d`, `1d12h`, `720h`, `90s`, `500ms`) in seconds.
pub fn parse_duration(s: &str) -> Option<f64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let mut total = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit() && c != '.')?;
        if digits == 0 {
            return None;
        }
        let n: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let secs = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            "w" => 7.0 * 86_400.0,
            "y" => 365.0 * 86_400.0,
            _ => return None,
        };
        total += n * secs;
        rest = &rest[unit_len..];
    }
    Some(total)
}

/// The time-based retention in seconds, from `/api/v1/status/flags`
/// (`storage.tsdb.retention.time`) or else `/api/v1/status/runtimeinfo`
/// (`storageRetention`, e.g. `15d` or `15d or 10GiB`).
pub fn parse_retention(flags: Option<&Value>, runtime: Option<&Value>) -> Result<f64, PromError> {
    let what = "Prometheus";
    let from_flags = flags
        .and_then(|f| f.pointer("/data/storage.tsdb.retention.time"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && *s != "0s");
    let from_runtime = runtime
        .and_then(|r| r.pointer("/data/storageRetention"))
        .and_then(Value::as_str)
        .and_then(|s| s.split(" or ").next());
    let text = from_flags
        .or(from_runtime)
        .ok_or_else(|| PromError::NoRetention {
            what: what.to_owned(),
        })?;
    parse_duration(text).ok_or_else(|| PromError::Duration {
        what: what.to_owned(),
        text: text.to_owned(),
    })
}

/// The series of an instant query's vector result with a value.
pub fn vector_len(what: &str, v: &Value) -> Result<usize, PromError> {
    let d = data(what, v)?;
    match d["resultType"].as_str() {
        Some("vector") | None => Ok(d["result"].as_array().map_or(0, Vec::len)),
        Some(other) => Err(shape(what, format!("result type {other}, not vector"))),
    }
}

pub async fn targets(client: &Client, prom: &ServiceRef) -> Result<Vec<Target>, PromError> {
    let v = svc::get_json(client, prom, "/api/v1/targets?state=active").await?;
    parse_targets(&v)
}

pub async fn retention_s(client: &Client, prom: &ServiceRef) -> Result<f64, PromError> {
    let flags = svc::get_json(client, prom, "/api/v1/status/flags")
        .await
        .ok();
    let runtime = svc::get_json(client, prom, "/api/v1/status/runtimeinfo")
        .await
        .ok();
    parse_retention(flags.as_ref(), runtime.as_ref())
}

/// Series an instant query returns at `time` (unix seconds).
pub async fn instant_series(
    client: &Client,
    svc_ref: &ServiceRef,
    query: &str,
    time: i64,
) -> Result<usize, PromError> {
    let path = svc::with_query(
        "/api/v1/query",
        &[("query", query), ("time", &time.to_string())],
    );
    let v = svc::get_json(client, svc_ref, &path).await?;
    vector_len(&format!("{svc_ref} query {query}"), &v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_by_job() {
        let v: Value = serde_json::from_str(
            r#"{"status": "success", "data": {"activeTargets": [
              {"labels": {"job": "postgresql", "instance": "10.0.0.5:9187"}, "health": "down",
               "lastError": "Get \"http://10.0.0.5:9187/metrics\": dial tcp 10.0.0.5:9187: connect: connection refused"},
              {"labels": {"job": "node-exporter", "instance": "a:9100"}, "health": "up", "lastError": ""},
              {"labels": {"job": "node-exporter", "instance": "b:9100"}, "health": "up", "lastError": ""}
            ], "droppedTargets": []}}"#,
        )
        .unwrap();
        let t = parse_targets(&v).unwrap();
        assert_eq!(job_health(&t, "node-exporter").up, 2);
        let pg = job_health(&t, "postgresql");
        assert_eq!((pg.total, pg.up), (1, 0));
        assert!(pg.down[0].1.ends_with("connection refused"));
        assert_eq!(job_health(&t, "nope"), JobHealth::default());
        assert_eq!(jobs(&t), ["node-exporter", "postgresql"]);
        let err = serde_json::json!({"status": "error", "error": "bad"});
        assert!(parse_targets(&err).is_err());
    }

    #[test]
    fn durations_and_retention() {
        assert_eq!(parse_duration("15d"), Some(15.0 * 86_400.0));
        assert_eq!(parse_duration("1d12h"), Some(36.0 * 3600.0));
        assert_eq!(parse_duration("720h"), Some(30.0 * 86_400.0));
        assert_eq!(parse_duration("500ms"), Some(0.5));
        assert_eq!(parse_duration("15"), None);
        assert_eq!(parse_duration("d"), None);
        let flags = serde_json::json!({"status": "success", "data": {"storage.tsdb.retention.time": "15d"}});
        assert_eq!(parse_retention(Some(&flags), None).unwrap(), 1_296_000.0);
        let rt =
            serde_json::json!({"status": "success", "data": {"storageRetention": "30d or 10GiB"}});
        assert_eq!(parse_retention(None, Some(&rt)).unwrap(), 2_592_000.0);
        assert!(matches!(
            parse_retention(None, None),
            Err(PromError::NoRetention { .. })
        ));
    }

    #[test]
    fn vectors() {
        let v = serde_json::json!({"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"job": "x"}, "value": [1, "1"]}]}});
        assert_eq!(vector_len("q", &v).unwrap(), 1);
        let empty = serde_json::json!({"status": "success", "data": {"resultType": "vector", "result": []}});
        assert_eq!(vector_len("q", &empty).unwrap(), 0);
        let m = serde_json::json!({"status": "success", "data": {"resultType": "matrix", "result": []}});
        assert!(vector_len("q", &m).is_err());
    }
}
