//! Grafana through the service proxy: the dashboards `/api/search` lists.

use kube::Client;
use serde_json::Value;

use super::svc::{self, ProxyError, ServiceRef};

pub fn grafana() -> ServiceRef {
    ServiceRef::new("monitoring", "grafana", 80)
}

#[derive(Debug, thiserror::Error)]
pub enum GrafanaError {
    #[error(transparent)]
    Proxy(#[from] ProxyError),
    #[error("Grafana /api/search did not answer a list")]
    Shape,
}

/// Dashboard titles of a `/api/search` answer (folders left out).
pub fn dashboard_titles(v: &Value) -> Result<Vec<String>, GrafanaError> {
    let items = v.as_array().ok_or(GrafanaError::Shape)?;
    Ok(items
        .iter()
        .filter(|d| d["type"].as_str().is_none_or(|t| t == "dash-db"))
        .filter_map(|d| d["title"].as_str().map(str::to_owned))
        .collect())
}

/// The `wanted` titles Grafana lacks (compared without case or surrounding blanks).
pub fn missing<'a>(titles: &[String], wanted: &'a [String]) -> Vec<&'a str> {
    let norm = |s: &str| s.trim().to_lowercase();
    wanted
        .iter()
        .filter(|w| !titles.iter().any(|t| norm(t) == norm(w)))
        .map(String::as_str)
        .collect()
}

pub async fn dashboards(
    client: &Client,
    grafana: &ServiceRef,
) -> Result<Vec<String>, GrafanaError> {
    // Grafana pages at 1000 by default; the stack has a handful.
    let v = svc::get_json(client, grafana, "/api/search?type=dash-db&limit=5000").await?;
    dashboard_titles(&v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_and_missing_ones() {
        let v: Value = serde_json::from_str(
            r#"[{"id": 1, "title": "Ceph cluster", "type": "dash-db", "uid": "ceph-cluster"},
                {"id": 2, "title": "General", "type": "dash-folder"},
                {"id": 3, "title": "Node Exporter Full", "type": "dash-db"}]"#,
        )
        .unwrap();
        let t = dashboard_titles(&v).unwrap();
        assert_eq!(t, ["Ceph cluster", "Node Exporter Full"]);
        let wanted = vec!["ceph cluster".to_owned(), "PostgreSQL".to_owned()];
        assert_eq!(missing(&t, &wanted), ["PostgreSQL"]);
        assert!(dashboard_titles(&serde_json::json!({"message": "x"})).is_err());
    }
}
