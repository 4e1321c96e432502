//! `metrics.prom`: the run's measurements in the Prometheus text exposition format
//! (version 0.0.4), for trends over nightly runs; and the push of the same text to a
//! Pushgateway (`--pushgateway URL`): `PUT /metrics/job/stormdrill/target/<t>/profile/<p>`,
//! so each target and profile keeps its own latest run.
//!
//! Every series carries `target` and `profile`; scenario series also `scenario` (its
//! name) and `location` (`feature:line`, which keeps same-named scenarios apart).

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    fs, io,
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::{
    client::legacy::{connect::HttpConnector, Client},
    rt::TokioExecutor,
};

use super::{RunDir, Summary};
use crate::verdict::{ScenarioStatus, Verdict};

pub const METRICS_FILE: &str = "metrics.prom";
/// The Pushgateway job.
pub const JOB: &str = "stormdrill";
const PUSH_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum PromError {
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid Pushgateway URL {url}: {why}")]
    Url { url: String, why: String },
    #[error("cannot set up TLS for the Pushgateway")]
    Tls(#[source] rustls::Error),
    #[error("pushing to {url} failed")]
    Request {
        url: String,
        #[source]
        source: hyper_util::client::legacy::Error,
    },
    #[error("pushing to {url}: no answer within {}s", PUSH_TIMEOUT.as_secs())]
    Timeout { url: String },
    #[error("the Pushgateway at {url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
}

/// A label value, escaped as the exposition format wants (`\`, `"`, newline).
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `NaN`, `+Inf`, `-Inf` or the number.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{v}")
    }
}

/// Families in order of first use, each written once with HELP and TYPE; a series
/// repeated with the same labels keeps its first value (a duplicate series makes the
/// whole text invalid for a Pushgateway).
#[derive(Default)]
struct Families {
    order: Vec<&'static str>,
    help: BTreeMap<&'static str, &'static str>,
    series: BTreeMap<&'static str, Vec<(String, f64)>>,
    seen: BTreeSet<(&'static str, String)>,
}

impl Families {
    fn add(&mut self, name: &'static str, help: &'static str, labels: &[(&str, &str)], v: f64) {
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        let labels = labels.join(",");
        if !self.seen.insert((name, labels.clone())) {
            return;
        }
        if !self.help.contains_key(name) {
            self.order.push(name);
            self.help.insert(name, help);
        }
        self.series.entry(name).or_default().push((labels, v));
    }

    fn render(&self) -> String {
        let mut out = String::new();
        for name in &self.order {
            let _ = writeln!(out, "# HELP {name} {}", self.help[name]);
            let _ = writeln!(out, "# TYPE {name} gauge");
            for (labels, v) in &self.series[name] {
                let _ = writeln!(out, "{name}{{{labels}}} {}", number(*v));
            }
        }
        out
    }
}

/// Measurements with a family of their own (name, help, measurement key); every
/// measurement is also in `stormdrill_measurement`.
const NAMED: [(&str, &str, &str); 7] = [
    (
        "stormdrill_rto_seconds",
        "Recovery time: from the fault (or disaster) to a steady state that holds.",
        "rto_s",
    ),
    (
        "stormdrill_rpo_seconds",
        "Recovery point: the disaster minus the newest data present after the restore.",
        "rpo_s",
    ),
    (
        "stormdrill_detection_seconds",
        "From the fault to its first observed effect.",
        "detection_s",
    ),
    (
        "stormdrill_p99_during_milliseconds",
        "API p99 latency while degraded.",
        "p99_during_ms",
    ),
    (
        "stormdrill_error_rate_during_percent",
        "API error rate while degraded.",
        "error_rate_during_pct",
    ),
    (
        "stormdrill_steady_p99_milliseconds",
        "Worst window p99 of the steady state before the fault.",
        "steady_p99_ms",
    ),
    (
        "stormdrill_load_achieved_rate",
        "Requests per second the load generator achieved.",
        "achieved_rate",
    ),
];

/// The profile label: the profile's name, `none` without one.
pub fn profile_label(summary: &Summary) -> &str {
    summary.profile.as_deref().unwrap_or("none")
}

/// The whole metrics.prom.
pub fn render(summary: &Summary) -> String {
    let target = summary.target.as_str();
    let profile = profile_label(summary);
    let run = [("target", target), ("profile", profile)];
    let mut f = Families::default();
    let harness = summary.harness.as_deref().unwrap_or("unknown");
    let seed = summary.seed.to_string();
    f.add(
        "stormdrill_run_info",
        "The run: id, harness build and seed.",
        &[
            ("target", target),
            ("profile", profile),
            ("run_id", &summary.run_id),
            ("harness", harness),
            ("seed", &seed),
        ],
        1.0,
    );
    f.add(
        "stormdrill_run_go",
        "1 when the run's verdict is go, else 0.",
        &run,
        if summary.verdict == Verdict::Go {
            1.0
        } else {
            0.0
        },
    );
    let verdict_code = match summary.verdict {
        Verdict::Go => 0.0,
        Verdict::NoGo => 1.0,
        Verdict::Error => 2.0,
        Verdict::Aborted => 3.0,
    };
    f.add(
        "stormdrill_run_exit_code",
        "The run's exit code: 0 go, 1 no-go, 2 could not run, 3 aborted.",
        &run,
        verdict_code,
    );
    f.add(
        "stormdrill_run_duration_seconds",
        "Wall time of the run.",
        &run,
        (summary.finished - summary.started).num_milliseconds() as f64 / 1000.0,
    );
    f.add(
        "stormdrill_run_finished_timestamp_seconds",
        "When the run finished (Unix time).",
        &run,
        summary.finished.timestamp_millis() as f64 / 1000.0,
    );
    for s in &summary.scenarios {
        let location = format!("{}:{}", s.feature, s.line);
        let sl = [
            ("target", target),
            ("profile", profile),
            ("scenario", s.name.as_str()),
            ("location", location.as_str()),
        ];
        f.add(
            "stormdrill_scenario_passed",
            "1 when the scenario passed, 0 when it failed or was skipped.",
            &sl,
            if s.status == ScenarioStatus::Passed {
                1.0
            } else {
                0.0
            },
        );
        for c in &s.criteria {
            let gating = if c.gating { "true" } else { "false" };
            let cl = [
                ("target", target),
                ("profile", profile),
                ("scenario", s.name.as_str()),
                ("location", location.as_str()),
                ("criterion", c.name.as_str()),
                ("unit", c.unit.as_str()),
                ("gating", gating),
            ];
            f.add(
                "stormdrill_criterion_figure",
                "A criterion's measured figure.",
                &cl,
                c.figure,
            );
            f.add(
                "stormdrill_criterion_threshold",
                "A criterion's threshold.",
                &cl,
                c.threshold,
            );
            f.add(
                "stormdrill_criterion_passed",
                "1 when the criterion passed, else 0.",
                &cl,
                if c.pass { 1.0 } else { 0.0 },
            );
        }
        for (name, help, key) in NAMED {
            if let Some(v) = s.measurements.get(key) {
                f.add(name, help, &sl, *v);
            }
        }
        for (name, v) in &s.measurements {
            let ml = [
                ("target", target),
                ("profile", profile),
                ("scenario", s.name.as_str()),
                ("location", location.as_str()),
                ("name", name.as_str()),
            ];
            f.add(
                "stormdrill_measurement",
                "Every figure a scenario measured, by name (unit in the name's suffix).",
                &ml,
                *v,
            );
        }
    }
    f.render()
}

pub fn write(run_dir: &RunDir, summary: &Summary) -> Result<PathBuf, PromError> {
    let path = run_dir.path().join(METRICS_FILE);
    fs::write(&path, render(summary)).map_err(|source| PromError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// One grouping-key part: `/name/value`, or `/name@base64/...` for a value the URL
/// path cannot carry as is (empty, or holding `/`), as the Pushgateway documents.
fn group_part(name: &str, value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'));
    if plain {
        format!("/{name}/{value}")
    } else {
        let b64 = base64::engine::general_purpose::URL_SAFE.encode(value.as_bytes());
        format!(
            "/{name}@base64/{}",
            if b64.is_empty() { "=".into() } else { b64 }
        )
    }
}

/// `<base>/metrics/job/stormdrill/target/<t>/profile/<p>`.
pub fn push_url(base: &http::Uri, summary: &Summary) -> Result<http::Uri, PromError> {
    let bad = |why: &str| PromError::Url {
        url: base.to_string(),
        why: why.to_owned(),
    };
    match base.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(bad("use http:// or https://")),
    }
    if base.query().is_some() {
        return Err(bad("a query has no place in it"));
    }
    let url = format!(
        "{}/metrics/job/{JOB}{}{}",
        base.to_string().trim_end_matches('/'),
        group_part("target", &summary.target),
        group_part("profile", profile_label(summary)),
    );
    url.parse().map_err(|_| bad("not a URL"))
}

/// Pushes `summary`'s metrics (replacing the group's previous ones).
pub async fn push(base: &http::Uri, summary: &Summary) -> Result<http::Uri, PromError> {
    let url = push_url(base, summary)?;
    let mut roots = rustls::RootCertStore::empty();
    if url.scheme_str() == Some("https") {
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(PromError::Tls)?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let req = http::Request::put(url.clone())
        .header(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )
        .header(http::header::USER_AGENT, "stormdrill")
        .body(Full::new(Bytes::from(render(summary))))
        .map_err(|e| PromError::Url {
            url: url.to_string(),
            why: e.to_string(),
        })?;
    let shown = url.to_string();
    let answer = async {
        let resp = client
            .request(req)
            .await
            .map_err(|source| PromError::Request {
                url: shown.clone(),
                source,
            })?;
        let status = resp.status();
        // The body only explains a refusal; a failed read leaves it empty.
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_owned())
            .unwrap_or_default();
        Ok::<_, PromError>((status, body))
    };
    let (status, body) = tokio::time::timeout(PUSH_TIMEOUT, answer)
        .await
        .map_err(|_| PromError::Timeout { url: shown.clone() })??;
    if !status.is_success() {
        return Err(PromError::Status {
            url: shown,
            status: status.as_u16(),
            body: body.chars().take(300).collect(),
        });
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::report::markdown::tests::sample;

    #[test]
    fn exposition_has_help_type_and_labelled_series() {
        let mut s = sample();
        s.scenarios[0]
            .measurements
            .insert("error_rate_during_pct".into(), f64::NAN);
        let text = render(&s);
        assert!(text.contains("# TYPE stormdrill_run_go gauge\n"));
        assert!(text.contains("stormdrill_run_go{target=\"twin\",profile=\"twin\"} 0\n"));
        assert!(text.contains("stormdrill_run_exit_code{target=\"twin\",profile=\"twin\"} 1\n"));
        let sl = "target=\"twin\",profile=\"twin\",scenario=\"api survives <node> loss\",\
                  location=\"features/x.feature:3\"";
        assert!(
            text.contains(&format!("stormdrill_rto_seconds{{{sl}}} 3\n")),
            "{text}"
        );
        assert!(text.contains(&format!(
            "stormdrill_error_rate_during_percent{{{sl}}} NaN\n"
        )));
        assert!(text.contains(&format!(
            "stormdrill_criterion_figure{{{sl},criterion=\"p99<x>|y\",unit=\"ms\",gating=\"true\"}} 900\n"
        )));
        assert!(text.contains(&format!(
            "stormdrill_criterion_passed{{{sl},criterion=\"p99<x>|y\",unit=\"ms\",gating=\"true\"}} 0\n"
        )));
        // Each family once, every sample line a valid `name{labels} value`.
        let mut types = BTreeSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                assert!(types.insert(rest.to_owned()), "family twice: {rest}");
            } else if !line.starts_with('#') {
                let (series, value) = line.rsplit_once(' ').unwrap();
                assert!(series.ends_with('}'), "{line}");
                assert!(
                    value.parse::<f64>().is_ok() || ["NaN", "+Inf", "-Inf"].contains(&value),
                    "{line}"
                );
            }
        }
    }

    #[test]
    fn label_values_are_escaped_and_duplicates_dropped() {
        let mut s = sample();
        s.scenarios[0].name = "a \"quoted\" \\ name\nx".into();
        let c = s.scenarios[0].criteria[0].clone();
        s.scenarios[0].criteria.push(c);
        let text = render(&s);
        assert!(text.contains("scenario=\"a \\\"quoted\\\" \\\\ name\\nx\""));
        let figures = text
            .lines()
            .filter(|l| l.starts_with("stormdrill_criterion_figure{") && l.contains("rto_s"))
            .count();
        assert_eq!(figures, 1);
    }

    #[test]
    fn grouping_keys_encode_what_a_path_cannot_hold() {
        let mut s = sample();
        let base: http::Uri = "http://127.0.0.1:9091/".parse().unwrap();
        assert_eq!(
            push_url(&base, &s).unwrap().to_string(),
            "http://127.0.0.1:9091/metrics/job/stormdrill/target/twin/profile/twin"
        );
        s.profile = Some("a/b".into());
        assert!(push_url(&base, &s)
            .unwrap()
            .to_string()
            .ends_with("/profile@base64/YS9i"));
        s.target = String::new();
        assert!(push_url(&base, &s)
            .unwrap()
            .to_string()
            .contains("/target@base64/="));
        let ftp: http::Uri = "ftp://x/".parse().unwrap();
        assert!(push_url(&ftp, &s).is_err());
    }

    /// What the fake Pushgateway received: (method, path, content type, body).
    type Seen = Arc<Mutex<Vec<(String, String, String, String)>>>;

    async fn gateway(status: u16) -> (std::net::SocketAddr, Seen) {
        use axum::{body::Bytes as AxBytes, extract::State, http::Request, Router};
        let seen: Seen = Arc::default();
        let app = Router::new()
            .fallback(
                move |State(seen): State<Seen>, req: Request<axum::body::Body>| async move {
                    let (parts, body) = req.into_parts();
                    let body: AxBytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
                    seen.lock().unwrap().push((
                        parts.method.to_string(),
                        parts.uri.path().to_owned(),
                        parts
                            .headers
                            .get("content-type")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned(),
                        String::from_utf8_lossy(&body).into_owned(),
                    ));
                    (
                        axum::http::StatusCode::from_u16(status).unwrap(),
                        "pushed metrics are invalid",
                    )
                },
            )
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (addr, seen)
    }

    #[tokio::test]
    async fn push_puts_the_exposition_under_job_target_and_profile() {
        let (addr, seen) = gateway(200).await;
        let base: http::Uri = format!("http://{addr}").parse().unwrap();
        let s = sample();
        let url = push(&base, &s).await.unwrap();
        assert_eq!(
            url.path(),
            "/metrics/job/stormdrill/target/twin/profile/twin"
        );
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 1);
        let (method, path, ctype, body) = &seen[0];
        assert_eq!(method, "PUT");
        assert_eq!(path, "/metrics/job/stormdrill/target/twin/profile/twin");
        assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
        assert_eq!(body, &render(&s));
    }

    #[tokio::test]
    async fn a_refused_push_is_an_error_with_the_gateways_words() {
        let (addr, _) = gateway(400).await;
        let base: http::Uri = format!("http://{addr}/").parse().unwrap();
        let e = push(&base, &sample()).await.unwrap_err();
        assert!(
            e.to_string()
                .ends_with("answered 400: pushed metrics are invalid"),
            "{e}"
        );
        // Nothing listens there any more once the listener is dropped: a connect error.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        let base: http::Uri = format!("http://127.0.0.1:{port}").parse().unwrap();
        assert!(matches!(
            push(&base, &sample()).await,
            Err(PromError::Request { .. })
        ));
    }
}
