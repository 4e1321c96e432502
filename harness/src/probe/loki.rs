//! Loki through the service proxy: recent log lines for a stream selector, and the
//! retention of the running config (`/config`).

use kube::Client;
use serde_json::Value;

use super::{
    prom::parse_duration,
    svc::{self, ProxyError, ServiceRef},
};

pub fn loki() -> ServiceRef {
    ServiceRef::new("monitoring", "loki", 3100)
}

/// Entries asked for per query: one is enough to prove lines exist; a few more
/// make the figure readable.
pub const LIMIT: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum LokiError {
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    #[error("Loki {what}: unexpected answer: {detail}")]
    Shape { what: &'static str, detail: String },
    #[error("Loki /config is not YAML")]
    Config(#[source] serde_yaml::Error),
}

/// Lines in a `query_range` answer (streams), and the newest one's time (unix ns).
pub fn count_lines(v: &Value) -> Result<(usize, Option<i64>), LokiError> {
    if v["status"] != "success" {
        return Err(LokiError::Shape {
            what: "query_range",
            detail: format!("status {}", v["status"]),
        });
    }
    let result = v
        .pointer("/data/result")
        .and_then(Value::as_array)
        .ok_or(LokiError::Shape {
            what: "query_range",
            detail: "no data.result".into(),
        })?;
    let mut n = 0;
    let mut newest: Option<i64> = None;
    for stream in result {
        for entry in stream["values"].as_array().into_iter().flatten() {
            n += 1;
            if let Some(ts) = entry[0].as_str().and_then(|t| t.parse::<i64>().ok()) {
                newest = Some(newest.map_or(ts, |m| m.max(ts)));
            }
        }
    }
    Ok((n, newest))
}

/// Retention from Loki's running config: `limits_config.retention_period` in
/// seconds when the compactor enforces it (`compactor.retention_enabled`), infinite
/// when nothing is ever deleted (retention disabled or `0s`).
pub fn parse_retention(config_yaml: &str) -> Result<f64, LokiError> {
    let v: serde_yaml::Value = serde_yaml::from_str(config_yaml).map_err(LokiError::Config)?;
    let enabled = v
        .get("compactor")
        .and_then(|c| c.get("retention_enabled"))
        .and_then(serde_yaml::Value::as_bool)
        .unwrap_or(false);
    let period = v
        .get("limits_config")
        .and_then(|l| l.get("retention_period"))
        .and_then(serde_yaml::Value::as_str)
        .unwrap_or("0s");
    let secs = parse_duration(period).ok_or(LokiError::Shape {
        what: "/config",
        detail: format!("retention_period {period:?} is not a duration"),
    })?;
    Ok(if enabled && secs > 0.0 {
        secs
    } else {
        f64::INFINITY
    })
}

/// Lines matching `selector` (LogQL stream selector) in the last `since_s` seconds.
pub async fn recent_lines(
    client: &Client,
    loki: &ServiceRef,
    selector: &str,
    since_s: f64,
    now_ns: i64,
) -> Result<(usize, Option<i64>), LokiError> {
    let start = now_ns - (since_s * 1e9) as i64;
    let path = svc::with_query(
        "/loki/api/v1/query_range",
        &[
            ("query", selector),
            ("start", &start.to_string()),
            ("end", &now_ns.to_string()),
            ("limit", &LIMIT.to_string()),
            ("direction", "backward"),
        ],
    );
    let v = svc::get_json(client, loki, &path).await?;
    count_lines(&v)
}

pub async fn retention_s(client: &Client, loki: &ServiceRef) -> Result<f64, LokiError> {
    let text = svc::get_text(client, loki, "/config").await?;
    parse_retention(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_newest() {
        let v: Value = serde_json::from_str(
            r#"{"status": "success", "data": {"resultType": "streams", "result": [
              {"stream": {"pod": "postgresql-0"}, "values": [["1795654768255802513", "a"], ["1795654767000000000", "b"]]},
              {"stream": {"pod": "postgresql-0", "container": "exporter"}, "values": [["1795654769000000000", "c"]]}
            ]}}"#,
        )
        .unwrap();
        assert_eq!(
            count_lines(&v).unwrap(),
            (3, Some(1_795_654_769_000_000_000))
        );
        let empty = serde_json::json!({"status": "success", "data": {"resultType": "streams", "result": []}});
        assert_eq!(count_lines(&empty).unwrap(), (0, None));
        assert!(count_lines(&serde_json::json!({"status": "error"})).is_err());
    }

    #[test]
    fn retention_needs_the_compactor() {
        let on =
            "limits_config:\n  retention_period: 720h\ncompactor:\n  retention_enabled: true\n";
        assert_eq!(parse_retention(on).unwrap(), 30.0 * 86_400.0);
        let off =
            "limits_config:\n  retention_period: 720h\ncompactor:\n  retention_enabled: false\n";
        assert!(parse_retention(off).unwrap().is_infinite());
        assert!(parse_retention(
            "limits_config: {retention_period: soon}\ncompactor: {retention_enabled: true}\n"
        )
        .is_err());
    }
}
