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
    /// Prometheus refused the request; its own words (e.g. a PromQL parse error).
    #[error("{what}: Prometheus answered {status} {error_type}: {error}")]
    Query {
        what: String,
        status: u16,
        error_type: String,
        error: String,
    },
}

/// One series of a query's result: labels and (unix seconds, value) samples (one for
/// an instant vector, several for a range matrix).
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub labels: std::collections::BTreeMap<String, String>,
    pub samples: Vec<(f64, f64)>,
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

/// A query's result (vector, matrix or scalar) as series; values Prometheus writes as
/// strings ("NaN", "+Inf" included) parsed to f64.
pub fn parse_series(what: &str, v: &Value) -> Result<Vec<Series>, PromError> {
    let d = data(what, v)?;
    let sample = |p: &Value| -> Option<(f64, f64)> {
        let a = p.as_array()?;
        Some((a.first()?.as_f64()?, a.get(1)?.as_str()?.parse().ok()?))
    };
    let bad = |detail: &str| shape(what, detail.to_owned());
    match d["resultType"].as_str() {
        Some("scalar") => Ok(vec![Series {
            labels: Default::default(),
            samples: vec![sample(&d["result"]).ok_or_else(|| bad("bad scalar"))?],
        }]),
        Some(kind @ ("vector" | "matrix")) => d["result"]
            .as_array()
            .ok_or_else(|| bad("no result list"))?
            .iter()
            .map(|r| {
                let labels = r["metric"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                            .collect()
                    })
                    .unwrap_or_default();
                let samples = if kind == "vector" {
                    vec![sample(&r["value"]).ok_or_else(|| bad("bad sample"))?]
                } else {
                    r["values"]
                        .as_array()
                        .ok_or_else(|| bad("no values"))?
                        .iter()
                        .map(|p| sample(p).ok_or_else(|| bad("bad sample")))
                        .collect::<Result<_, _>>()?
                };
                Ok(Series { labels, samples })
            })
            .collect(),
        other => Err(bad(&format!("result type {other:?}"))),
    }
}

/// GET an API path; Prometheus's own error (`{"status":"error","errorType",...}`,
/// sent with 400/422/503) becomes [`PromError::Query`] rather than a body excerpt.
async fn api_get(
    client: &Client,
    prom: &ServiceRef,
    path: &str,
    what: &str,
) -> Result<Value, PromError> {
    let (status, body) = svc::get_raw(client, prom, path).await?;
    match serde_json::from_str::<Value>(&body) {
        Ok(v) if v["status"] == "error" => Err(PromError::Query {
            what: what.to_owned(),
            status,
            error_type: v["errorType"].as_str().unwrap_or("").to_owned(),
            error: v["error"].as_str().unwrap_or("").to_owned(),
        }),
        Ok(v) if (200..300).contains(&status) => Ok(v),
        Ok(_) => Err(svc::ProxyError::Status {
            url: prom.proxy_url(path),
            status,
            excerpt: svc::excerpt(&body),
        }
        .into()),
        Err(source) if (200..300).contains(&status) => Err(svc::ProxyError::Json {
            url: prom.proxy_url(path),
            excerpt: svc::excerpt(&body),
            source,
        }
        .into()),
        Err(_) => Err(svc::ProxyError::Status {
            url: prom.proxy_url(path),
            status,
            excerpt: svc::excerpt(&body),
        }
        .into()),
    }
}

/// `/api/v1/query` at `time` (unix seconds; None: now).
pub async fn query(
    client: &Client,
    prom: &ServiceRef,
    query: &str,
    time: Option<f64>,
) -> Result<Vec<Series>, PromError> {
    let t = time.map(|t| format!("{t:.3}"));
    let mut params = vec![("query", query)];
    if let Some(t) = &t {
        params.push(("time", t));
    }
    let what = format!("{prom} query {query}");
    let v = api_get(
        client,
        prom,
        &svc::with_query("/api/v1/query", &params),
        &what,
    )
    .await?;
    parse_series(&what, &v)
}

/// `/api/v1/query_range` from `start` to `end` (unix seconds) every `step_s`.
pub async fn query_range(
    client: &Client,
    prom: &ServiceRef,
    query: &str,
    start: f64,
    end: f64,
    step_s: f64,
) -> Result<Vec<Series>, PromError> {
    let (start, end, step) = (
        format!("{start:.3}"),
        format!("{end:.3}"),
        format!("{step_s}"),
    );
    let path = svc::with_query(
        "/api/v1/query_range",
        &[
            ("query", query),
            ("start", &start),
            ("end", &end),
            ("step", &step),
        ],
    );
    let what = format!("{prom} query_range {query}");
    let v = api_get(client, prom, &path, &what).await?;
    parse_series(&what, &v)
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
    let what = format!("{svc_ref} query {query}");
    let v = api_get(client, svc_ref, &path, &what).await?;
    vector_len(&what, &v)
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

    #[test]
    fn series_of_vectors_matrices_and_scalars() {
        let v = serde_json::json!({"status": "success", "data": {"resultType": "vector", "result": [
            {"metric": {"__name__": "ceph_health_status", "job": "ceph"}, "value": [1795661535.5, "1"]}]}});
        let s = parse_series("q", &v).unwrap();
        assert_eq!(s[0].labels["job"], "ceph");
        assert_eq!(s[0].samples, vec![(1795661535.5, 1.0)]);
        let m = serde_json::json!({"status": "success", "data": {"resultType": "matrix", "result": [
            {"metric": {}, "values": [[10, "0"], [12, "NaN"], [14, "+Inf"]]}]}});
        let s = parse_series("q", &m).unwrap();
        assert_eq!(s[0].samples.len(), 3);
        assert!(s[0].samples[1].1.is_nan() && s[0].samples[2].1.is_infinite());
        let sc = serde_json::json!({"status": "success", "data": {"resultType": "scalar", "result": [3, "2.5"]}});
        assert_eq!(parse_series("q", &sc).unwrap()[0].samples, vec![(3.0, 2.5)]);
        let bad = serde_json::json!({"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1]}]}});
        assert!(parse_series("q", &bad).is_err());
    }
}
