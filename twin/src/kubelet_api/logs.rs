//! `GET /containerLogs/{ns}/{pod}/{container}`: a container's log bytes.
//!
//! Contract, as `getContainerLogs` in k8s.io/kubernetes/pkg/kubelet/server/server.go:
//! the query is a v1.PodLogOptions (`follow`, `previous`, `timestamps`,
//! `tailLines` (or the legacy `tail`, where `all` means none), `sinceSeconds`,
//! `sinceTime` (RFC 3339, turned into seconds before now), `limitBytes`); a query
//! that does not parse is 400, one that fails validation (negative `tailLines`,
//! `sinceSeconds` or `limitBytes` below 1, both `sinceSeconds` and `sinceTime`) is
//! 422. The body is the raw bytes from [`Kubelet::logs`], `text/plain`, one chunk
//! per item, each flushed as it comes (the kubelet's flushwriter), cut at
//! `limitBytes`. Errors are plain text (see the module docs of `kubelet_api`).

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper::{header, Response};

use super::server::Body;
use super::{Kubelet, KubeletApiError, LogQuery};

fn parse_bool(k: &str, v: &str) -> Result<bool, KubeletApiError> {
    // strconv.ParseBool
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" | "" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(KubeletApiError::BadRequest(format!(
            "unable to decode query: invalid boolean {k}={v:?}"
        ))),
    }
}

fn parse_int(k: &str, v: &str) -> Result<i64, KubeletApiError> {
    v.parse::<i64>().map_err(|_| {
        KubeletApiError::BadRequest(format!("unable to decode query: invalid integer {k}={v:?}"))
    })
}

/// Builds and validates the [`LogQuery`] of a request.
pub fn parse_query(
    namespace: &str,
    pod: &str,
    container: &str,
    query: &[(String, String)],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<LogQuery, KubeletApiError> {
    let mut q = LogQuery {
        namespace: namespace.to_string(),
        pod: pod.to_string(),
        container: container.to_string(),
        ..LogQuery::default()
    };
    let mut since_time = None;
    let mut tail_all = false;
    for (k, v) in query {
        match k.as_str() {
            "follow" => q.follow = parse_bool(k, v)?,
            "previous" => q.previous = parse_bool(k, v)?,
            "timestamps" => q.timestamps = parse_bool(k, v)?,
            "tailLines" if !v.is_empty() => q.tail_lines = Some(parse_int(k, v)?),
            "tail" if v == "all" => tail_all = true,
            "tail" if !v.is_empty() => q.tail_lines = Some(parse_int(k, v)?),
            "sinceSeconds" if !v.is_empty() => q.since_seconds = Some(parse_int(k, v)?),
            "limitBytes" if !v.is_empty() => q.limit_bytes = Some(parse_int(k, v)?),
            "sinceTime" if !v.is_empty() => {
                let t = chrono::DateTime::parse_from_rfc3339(v).map_err(|e| {
                    KubeletApiError::BadRequest(format!(
                        "unable to decode query: invalid sinceTime {v:?}: {e}"
                    ))
                })?;
                since_time = Some(t.with_timezone(&chrono::Utc));
            }
            _ => {}
        }
    }
    if tail_all {
        q.tail_lines = None;
    }
    if q.tail_lines.is_some_and(|n| n < 0) {
        return Err(KubeletApiError::Invalid(
            "tailLines: Invalid value: must be greater than or equal to 0".into(),
        ));
    }
    if q.limit_bytes.is_some_and(|n| n < 1) {
        return Err(KubeletApiError::Invalid(
            "limitBytes: Invalid value: must be greater than 0".into(),
        ));
    }
    if q.since_seconds.is_some_and(|n| n < 1) {
        return Err(KubeletApiError::Invalid(
            "sinceSeconds: Invalid value: must be greater than 0".into(),
        ));
    }
    if let Some(t) = since_time {
        if q.since_seconds.is_some() {
            return Err(KubeletApiError::Invalid(
                "sinceSeconds: Forbidden: at most one of `sinceTime` or `sinceSeconds` may be specified".into(),
            ));
        }
        q.since_seconds = Some((now - t).num_seconds().max(1));
    }
    Ok(q)
}

/// Cuts a byte stream after `limit` bytes.
pub fn limit_stream(
    stream: futures::stream::BoxStream<'static, Bytes>,
    limit: Option<i64>,
) -> futures::stream::BoxStream<'static, Bytes> {
    let Some(limit) = limit.and_then(|l| usize::try_from(l).ok()) else {
        return stream;
    };
    futures::stream::unfold((stream, limit), |(mut s, left)| async move {
        if left == 0 {
            return None;
        }
        let mut chunk = s.next().await?;
        if chunk.len() > left {
            chunk.truncate(left);
        }
        let left = left - chunk.len();
        Some((chunk, (s, left)))
    })
    .boxed()
}

/// Answers a `/containerLogs` request (its query pairs, in order).
pub async fn handle(
    query: &[(String, String)],
    namespace: &str,
    pod: &str,
    container: &str,
    kubelet: Arc<dyn Kubelet>,
) -> Result<Response<Body>, KubeletApiError> {
    let q = parse_query(namespace, pod, container, query, chrono::Utc::now())?;
    kubelet.lookup(namespace, pod, Some(container))?;
    let limit = q.limit_bytes;
    let stream = limit_stream(kubelet.logs(q).await?, limit);
    let body = StreamBody::new(
        stream
            .filter(|b| futures::future::ready(!b.is_empty()))
            .map(|b| Ok::<_, Infallible>(Frame::data(b))),
    );
    let mut resp = Response::new(BodyExt::boxed_unsync(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain"),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn query_parses_and_validates() {
        let now = chrono::Utc::now();
        let lq = parse_query(
            "ns",
            "p",
            "c",
            &q(&[
                ("follow", "true"),
                ("tailLines", "10"),
                ("limitBytes", "5"),
                ("timestamps", "1"),
            ]),
            now,
        )
        .unwrap();
        assert!(lq.follow && lq.timestamps && !lq.previous);
        assert_eq!((lq.tail_lines, lq.limit_bytes), (Some(10), Some(5)));
        let lq = parse_query(
            "ns",
            "p",
            "c",
            &q(&[("tail", "all"), ("tailLines", "3")]),
            now,
        )
        .unwrap();
        assert_eq!(lq.tail_lines, None);
        let t = (now - chrono::Duration::seconds(90)).to_rfc3339();
        let lq = parse_query("ns", "p", "c", &q(&[("sinceTime", t.as_str())]), now).unwrap();
        assert_eq!(lq.since_seconds, Some(90));
        assert!(matches!(
            parse_query("ns", "p", "c", &q(&[("tailLines", "-1")]), now),
            Err(KubeletApiError::Invalid(_))
        ));
        assert!(matches!(
            parse_query("ns", "p", "c", &q(&[("sinceSeconds", "0")]), now),
            Err(KubeletApiError::Invalid(_))
        ));
        assert!(matches!(
            parse_query("ns", "p", "c", &q(&[("follow", "yes")]), now),
            Err(KubeletApiError::BadRequest(_))
        ));
        assert!(matches!(
            parse_query(
                "ns",
                "p",
                "c",
                &q(&[("sinceSeconds", "5"), ("sinceTime", t.as_str())]),
                now
            ),
            Err(KubeletApiError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn limit_cuts_the_stream() {
        let s = futures::stream::iter(vec![
            Bytes::from_static(b"hello "),
            Bytes::from_static(b"world"),
        ])
        .boxed();
        let got: Vec<Bytes> = limit_stream(s, Some(8)).collect().await;
        assert_eq!(got.concat(), b"hello wo");
    }
}
