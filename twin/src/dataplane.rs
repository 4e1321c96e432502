//! The API data plane: what Envoy (programmed by Contour) and the `fastapi` pods do
//! with a client's HTTPS request, on 127.0.0.1. The listener's address is published
//! the way a cluster publishes it: in the `envoy` Service's
//! `status.loadBalancer.ingress` (ip and port), so clients find it through the API.
//!
//! A request goes: TLS (the certificate is the one cert-manager stored in the
//! HTTPProxy's `tls.secretName`, chosen by SNI) -> virtual host by `Host` -> the
//! global rate limit (descriptor remoteAddress; limit from the rate limit service's
//! config, fixed one-second windows per address, as envoyproxy/ratelimit counts;
//! 429 with `x-envoy-ratelimited: true`) -> a Ready endpoint of the route's Service,
//! round robin (none: 503 `no healthy upstream`, Envoy's words) -> the pod, which
//! serves `/health`, `/works`, `/works/{id}`, `/authors/{id}` from PostgreSQL.
//!
//! The latency model, in one place ([`LatencyModel`]): each pod serves at most
//! `pod_concurrency` requests at once (others queue, so overload shows as latency);
//! a request's service time is log-normal around `median` with `sigma`; requests that
//! touch the database then depend on it: no Ready database pod -> 503 after
//! `db_connect_timeout`; the database isolated by a NetworkPolicy -> the same
//! (connections time out); its Ceph pool degraded -> service time × `degraded_factor`;
//! its pool inactive (PGs below min_size) -> I/O blocks: the request stalls for
//! `blocked_io_stall`, then 504.
//!
//! Envoy learns endpoint changes late: a pod that leaves the Service's ready endpoints
//! (deleted, evicted, unready) still gets requests for `endpoint_lag`. A pod with a
//! `preStop` sleep keeps serving through it (the hook delays SIGTERM); one without has
//! stopped listening, and Envoy answers 503 `upstream connect error or disconnect/reset
//! before headers. reset reason: connection failure` (defect `api-no-prestop`).
//!
//! Under the `api-no-db-reconnect` defect each API pod
//! keeps the database connection it opened first: once that database process is gone
//! (another pod, or its container restarted) the pod answers 503 until it restarts.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rand::{Rng, SeedableRng};
use rustls::pki_types::pem::PemObject;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

use crate::ctx::{obj, Ctx};

/// Every parameter of the simulated API's latency and failures.
#[derive(Clone, Debug)]
pub struct LatencyModel {
    pub median: Duration,
    pub sigma: f64,
    pub pod_concurrency: usize,
    pub degraded_factor: f64,
    pub db_connect_timeout: Duration,
    pub blocked_io_stall: Duration,
    /// From a pod leaving the ready endpoints to Envoy no longer sending it requests
    /// (endpoints controller -> Contour -> xDS).
    pub endpoint_lag: Duration,
}

impl Default for LatencyModel {
    fn default() -> Self {
        LatencyModel {
            median: Duration::from_millis(4),
            sigma: 0.4,
            pod_concurrency: 64,
            degraded_factor: 3.0,
            db_connect_timeout: Duration::from_secs(2),
            blocked_io_stall: Duration::from_secs(10),
            endpoint_lag: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DataPlaneError {
    #[error("cannot bind the data plane on 127.0.0.1")]
    Bind(#[source] std::io::Error),
}

/// The database as the API sees it.
#[derive(Clone, Debug, PartialEq)]
pub enum DbState {
    Ok { pod: Value, slow: bool },
    Unavailable(String),
    Blocked,
}

/// What routing a request to a host needs, read from the API at most every
/// [`ROUTE_TTL`]: Envoy, too, acts on a configuration pushed to it, not on a fresh
/// read of the cluster per request (and per-request reads would make the twin's
/// own CPU the bottleneck of a load test).
#[derive(Clone)]
struct Route {
    proxy: Value,
    limit: Option<u64>,
    /// Envoy's endpoints: the ready pods, and departed ones still within the lag.
    pods: Vec<Value>,
    db: DbState,
}

/// The ready pods last seen for a host, and the departed ones by uid.
type HostEndpoints = (Vec<Value>, HashMap<String, Departed>);

/// A pod Envoy still routes to after it left the ready endpoints.
struct Departed {
    pod: Value,
    left: std::time::Instant,
    /// Until when it still answers (its preStop sleep).
    serves_until: std::time::Instant,
}

const ROUTE_TTL: Duration = Duration::from_millis(100);

/// How much slower `/works` is under the `works-index-missing` defect (a sequential
/// scan of the table instead of an index scan: ~0.6 s instead of ~4 ms).
pub const SEQ_SCAN_FACTOR: f64 = 150.0;

struct Shared {
    routes: Mutex<HashMap<String, (std::time::Instant, Option<Route>)>>,
    ctx: Ctx,
    model: LatencyModel,
    rr: Mutex<HashMap<String, usize>>,
    /// Per host: Envoy's view of its endpoints.
    endpoints: Mutex<HashMap<String, HostEndpoints>>,
    /// API pod uid -> the database process its connection was opened to
    /// (`api-no-db-reconnect` only).
    conns: Mutex<HashMap<String, String>>,
    windows: Mutex<HashMap<String, (u64, u64)>>,
    pods: Mutex<HashMap<String, Arc<Semaphore>>>,
    rng: Mutex<rand::rngs::StdRng>,
    certs: Mutex<HashMap<String, (String, Arc<rustls::sign::CertifiedKey>)>>,
}

/// Picks the certificate by SNI from the HTTPProxy's TLS secret, as Envoy's filter
/// chains do; no match fails the handshake.
#[derive(Debug)]
struct SniResolver(std::sync::Weak<SharedHandle>);

struct SharedHandle(Shared);

impl std::fmt::Debug for SharedHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("dataplane")
    }
}

impl rustls::server::ResolvesServerCert for SniResolver {
    fn resolve(
        &self,
        hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let shared = self.0.upgrade()?;
        let host = hello.server_name()?.to_string();
        shared.0.cert_for(&host)
    }
}

fn b64(v: &Value) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(v.as_str()?)
        .ok()
}

impl Shared {
    fn route(&self, host: &str) -> Option<Route> {
        if let Some((at, r)) = self
            .routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(host)
        {
            if at.elapsed() < ROUTE_TTL {
                return r.clone();
            }
        }
        let route = self.proxy_for(host).map(|proxy| {
            let ns = obj::namespace(&proxy).to_string();
            let service = proxy
                .pointer("/spec/routes/0/services/0/name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            Route {
                limit: self.rate_limit(&proxy),
                pods: self.envoy_endpoints(host, self.ready_pods(&ns, &service)),
                db: self.db_state(&ns),
                proxy,
            }
        });
        self.routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(host.to_string(), (std::time::Instant::now(), route.clone()));
        route
    }

    /// The ready pods plus those that left them less than `endpoint_lag` ago.
    fn envoy_endpoints(&self, host: &str, ready: Vec<Value>) -> Vec<Value> {
        let now = std::time::Instant::now();
        let mut all = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        let (last, departed) = all.entry(host.to_string()).or_default();
        for p in last.iter() {
            let uid = obj::uid(p);
            if !ready.iter().any(|r| obj::uid(r) == uid) && !departed.contains_key(uid) {
                departed.insert(
                    uid.to_string(),
                    Departed {
                        pod: p.clone(),
                        left: now,
                        serves_until: now + prestop_sleep(p),
                    },
                );
            }
        }
        departed.retain(|uid, d| {
            now < d.left + self.model.endpoint_lag && !ready.iter().any(|r| obj::uid(r) == uid)
        });
        *last = ready.clone();
        let mut pods = ready;
        pods.extend(departed.values().map(|d| d.pod.clone()));
        pods
    }

    /// Whether a departed pod has stopped answering (no preStop sleep left).
    fn stopped(&self, host: &str, pod: &Value) -> bool {
        let all = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        all.get(host)
            .and_then(|(_, departed)| departed.get(obj::uid(pod)))
            .is_some_and(|d| std::time::Instant::now() >= d.serves_until)
    }

    fn proxy_for(&self, host: &str) -> Option<Value> {
        self.ctx
            .client
            .list("projectcontour.io", "httpproxies", None, None)
            .into_iter()
            .find(|p| p.pointer("/spec/virtualhost/fqdn").and_then(Value::as_str) == Some(host))
    }

    fn cert_for(&self, host: &str) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let proxy = self.proxy_for(host)?;
        let secret_name = proxy
            .pointer("/spec/virtualhost/tls/secretName")
            .and_then(Value::as_str)?;
        let secret =
            self.ctx
                .client
                .get("", "secrets", Some(obj::namespace(&proxy)), secret_name)?;
        let rv = secret
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if let Some((seen, ck)) = self
            .certs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(host)
        {
            if *seen == rv {
                return Some(ck.clone());
            }
        }
        let crt = b64(secret.pointer("/data/tls.crt")?)?;
        let key = b64(secret.pointer("/data/tls.key")?)?;
        let certs: Vec<rustls::pki_types::CertificateDer<'static>> =
            rustls::pki_types::CertificateDer::pem_slice_iter(&crt)
                .filter_map(Result::ok)
                .collect();
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(&key).ok()?;
        let provider = rustls::crypto::ring::default_provider();
        let signing = provider.key_provider.load_private_key(key).ok()?;
        let ck = Arc::new(rustls::sign::CertifiedKey::new(certs, signing));
        self.certs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(host.to_string(), (rv, ck.clone()));
        Some(ck)
    }

    /// Requests allowed per second and remote address by the rate limit service.
    fn rate_limit(&self, proxy: &Value) -> Option<u64> {
        let uses_remote = proxy
            .pointer("/spec/routes")
            .and_then(Value::as_array)
            .is_some_and(|routes| {
                routes.iter().any(|r| {
                    r.pointer("/rateLimitPolicy/global/descriptors")
                        .and_then(Value::as_array)
                        .is_some_and(|ds| {
                            ds.iter().any(|d| {
                                d["entries"].as_array().is_some_and(|es| {
                                    es.iter().any(|e| e.get("remoteAddress").is_some())
                                })
                            })
                        })
                })
            });
        if !uses_remote
            || !crate::operators::operator_running(&self.ctx, "projectcontour", "contour-ratelimit")
        {
            // Contour's global rate limiting fails open when its service is away.
            return None;
        }
        let cm = self.ctx.client.get(
            "",
            "configmaps",
            Some("projectcontour"),
            "contour-ratelimit",
        )?;
        let text = cm
            .pointer("/data/ratelimit-config.yaml")
            .and_then(Value::as_str)?;
        let conf: Value = serde_yaml::from_str(text).ok()?;
        conf["descriptors"]
            .as_array()?
            .iter()
            .find(|d| d["key"] == "remote_address")
            .and_then(|d| {
                let n = d
                    .pointer("/rate_limit/requests_per_unit")
                    .and_then(Value::as_u64)?;
                match d.pointer("/rate_limit/unit").and_then(Value::as_str)? {
                    "second" => Some(n),
                    _ => None,
                }
            })
    }

    fn over_limit(&self, addr: &str, limit: u64) -> bool {
        let second = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut w = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let entry = w.entry(addr.to_string()).or_insert((second, 0));
        if entry.0 != second {
            *entry = (second, 0);
        }
        entry.1 += 1;
        entry.1 > limit
    }

    fn ready_pods(&self, ns: &str, service: &str) -> Vec<Value> {
        let Some(svc) = self.ctx.client.get("", "services", Some(ns), service) else {
            return Vec::new();
        };
        crate::sim::service_pods(&self.ctx, &svc)
            .into_iter()
            .filter(|p| obj::is_pod_ready(p) && !obj::is_terminating(p))
            .collect()
    }

    fn db_state(&self, ns: &str) -> DbState {
        let sel = crate::selector::LabelSelector::parse("app=postgresql").expect("static selector");
        let pods: Vec<Value> = self
            .ctx
            .client
            .list("", "pods", Some(ns), Some(&sel))
            .into_iter()
            .filter(|p| obj::is_pod_ready(p) && !obj::is_terminating(p))
            .collect();
        let Some(pod) = pods.into_iter().next() else {
            return DbState::Unavailable("no Ready database pod".into());
        };
        if isolated(&self.ctx, &pod) {
            return DbState::Unavailable("database unreachable (network policy)".into());
        }
        let pool = crate::voldata::pod_volume_pv(&self.ctx, &pod, "data")
            .and_then(|pv| self.ctx.client.get("", "persistentvolumes", None, &pv))
            .and_then(|pv| {
                pv.pointer("/spec/storageClassName")
                    .and_then(Value::as_str)
                    .map(String::from)
            })
            .and_then(|sc| {
                self.ctx
                    .client
                    .get("storage.k8s.io", "storageclasses", None, &sc)
            })
            .and_then(|sc| {
                sc.pointer("/parameters/pool")
                    .and_then(Value::as_str)
                    .map(String::from)
            });
        let mut slow = false;
        if let Some(pool) = pool {
            if let Some(io) = self.ctx.ceph_backend.pool_io(&pool) {
                if io.blocked {
                    return DbState::Blocked;
                }
                slow = io.degraded;
            }
        }
        DbState::Ok { pod, slow }
    }

    /// Whether the API pod's database connection still reaches a live server: the
    /// first database process it served from is the one it stays connected to.
    fn connection_alive(&self, api_pod: &Value, db_pod: &Value) -> bool {
        let process = obj::incarnation(db_pod);
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns
            .entry(obj::uid(api_pod).to_string())
            .or_insert_with(|| process.clone())
            == &process
    }

    fn service_time(&self, factor: f64) -> Duration {
        // Log-normal by Box-Muller: exp(ln(median) + sigma * N(0, 1)).
        let (u1, u2): (f64, f64) = {
            let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            (rng.random_range(f64::EPSILON..1.0), rng.random())
        };
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        let s = (self.model.median.as_secs_f64().ln() + self.model.sigma * z).exp();
        Duration::from_secs_f64((s * factor).min(60.0))
    }
}

/// How long a pod's `preStop` hook sleeps: `sleep N` (exec, directly or through a
/// shell) or the `sleep` action; zero without one.
fn prestop_sleep(pod: &Value) -> Duration {
    let Some(containers) = pod.pointer("/spec/containers").and_then(Value::as_array) else {
        return Duration::ZERO;
    };
    containers
        .iter()
        .filter_map(|c| c.pointer("/lifecycle/preStop"))
        .filter_map(|h| {
            if let Some(secs) = h.pointer("/sleep/seconds").and_then(Value::as_f64) {
                return Some(secs);
            }
            let words: Vec<&str> = h
                .pointer("/exec/command")
                .and_then(Value::as_array)?
                .iter()
                .filter_map(Value::as_str)
                .flat_map(str::split_whitespace)
                .collect();
            let at = words
                .iter()
                .position(|w| *w == "sleep" || w.ends_with("/sleep"))?;
            words.get(at + 1)?.parse::<f64>().ok()
        })
        .map(|s| Duration::from_secs_f64(s.max(0.0)))
        .max()
        .unwrap_or(Duration::ZERO)
}

/// Whether a NetworkPolicy selecting the pod denies it ingress from the API pods.
fn isolated(ctx: &Ctx, pod: &Value) -> bool {
    let labels = pod
        .pointer("/metadata/labels")
        .cloned()
        .unwrap_or(json!({}));
    ctx.client.list("networking.k8s.io", "networkpolicies", Some(obj::namespace(pod)), None).iter().any(|np| {
        let selects = np
            .pointer("/spec/podSelector")
            .and_then(|s| crate::selector::LabelSelector::from_label_selector_json(s).ok())
            .is_some_and(|s| s.matches_object(&json!({"metadata": {"labels": labels}})));
        let ingress_policy = np
            .pointer("/spec/policyTypes")
            .and_then(Value::as_array)
            .map(|a| a.iter().any(|t| t == "Ingress"))
            .unwrap_or(true);
        let allows_api = np.pointer("/spec/ingress").and_then(Value::as_array).is_some_and(|rules| {
            rules.iter().any(|r| {
                r.get("from").is_none_or(|from| {
                    from.as_array().is_some_and(|f| {
                        f.iter().any(|peer| {
                            peer.get("podSelector").and_then(|s| crate::selector::LabelSelector::from_label_selector_json(s).ok()).is_some_and(|s| s.matches_object(&json!({"metadata": {"labels": {"app": "fastapi"}}})))
                        })
                    })
                })
            })
        });
        selects && ingress_policy && !allows_api
    })
}

fn respond(status: u16, body: Value, extra: &[(&str, &str)]) -> Response<Full<Bytes>> {
    let mut b = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("server", "envoy");
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    b.body(Full::new(Bytes::from(
        serde_json::to_vec(&body).unwrap_or_default(),
    )))
    .expect("valid response")
}

async fn handle(
    shared: Arc<SharedHandle>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let s = &shared.0;
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(|h| h.split(':').next().unwrap_or(h).to_string())
        .or_else(|| req.uri().host().map(String::from))
        .unwrap_or_default();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let _ = req.into_body().collect().await;
    let Some(route) = s.route(&host) else {
        return Ok(respond(404, json!({"error": "no route for host"}), &[]));
    };
    let proxy = route.proxy.clone();
    if let Some(limit) = route.limit {
        if s.over_limit(&peer.ip().to_string(), limit) {
            return Ok(Response::builder()
                .status(429)
                .header("x-envoy-ratelimited", "true")
                .header("server", "envoy")
                .body(Full::new(Bytes::new()))
                .expect("valid response"));
        }
    }
    let Some(service) = proxy
        .pointer("/spec/routes/0/services/0/name")
        .and_then(Value::as_str)
        .map(String::from)
    else {
        return Ok(respond(404, json!({"error": "no route"}), &[]));
    };
    let pods = route.pods.clone();
    if pods.is_empty() {
        return Ok(Response::builder()
            .status(503)
            .header("server", "envoy")
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from("no healthy upstream")))
            .expect("valid response"));
    }
    let pod = {
        let mut rr = s.rr.lock().unwrap_or_else(|e| e.into_inner());
        let i = rr.entry(service.clone()).or_insert(0);
        *i = i.wrapping_add(1);
        pods[*i % pods.len()].clone()
    };
    if s.stopped(&host, &pod) {
        // Envoy's local reply when the upstream refuses the connection.
        return Ok(Response::builder()
            .status(503)
            .header("server", "envoy")
            .header("content-type", "text/plain")
            .body(Full::new(Bytes::from(
                "upstream connect error or disconnect/reset before headers. reset reason: connection failure",
            )))
            .expect("valid response"));
    }
    let permit_pool = s
        .pods
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(obj::uid(&pod).to_string())
        .or_insert_with(|| Arc::new(Semaphore::new(s.model.pod_concurrency)))
        .clone();
    let Ok(_permit) = permit_pool.acquire_owned().await else {
        return Ok(respond(503, json!({"detail": "upstream overflow"}), &[]));
    };
    // Blocked I/O waits, as a client of an inactive PG does: it resumes when the PGs
    // peer again, or the query times out. The health check's query waits too: it is a
    // database round trip like the others, not an instant verdict on the storage.
    let mut db = route.db.clone();
    let stall_deadline = std::time::Instant::now() + s.model.blocked_io_stall;
    while db == DbState::Blocked && std::time::Instant::now() < stall_deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        db = s.route(&host).map(|r| r.db).unwrap_or(DbState::Blocked);
    }
    if let DbState::Ok { pod: db_pod, .. } = &db {
        if s.ctx.defects.has("api-no-db-reconnect") && !s.connection_alive(&pod, db_pod) {
            tokio::time::sleep(s.service_time(0.2)).await;
            // psycopg's words when the server end of a kept connection is gone.
            return Ok(respond(
                503,
                json!({"detail": "server closed the connection unexpectedly"}),
                &[],
            ));
        }
    }
    if path == "/health" || path == "/healthz" {
        tokio::time::sleep(s.service_time(0.2)).await;
        return Ok(match db {
            DbState::Ok { .. } => respond(200, json!({"status": "ok", "database": "ok"}), &[]),
            DbState::Unavailable(why) => {
                respond(503, json!({"status": "degraded", "database": why}), &[])
            }
            DbState::Blocked => respond(
                503,
                json!({"status": "degraded", "database": "storage blocked"}),
                &[],
            ),
        });
    }
    let (db_pod, slow) = match db {
        DbState::Ok { pod, slow } => (pod, slow),
        DbState::Unavailable(why) => {
            tokio::time::sleep(s.model.db_connect_timeout).await;
            return Ok(respond(503, json!({"detail": why}), &[]));
        }
        DbState::Blocked => {
            return Ok(respond(
                504,
                json!({"detail": "database query timed out"}),
                &[],
            ));
        }
    };
    let mut factor = if slow { s.model.degraded_factor } else { 1.0 };
    if path.trim_matches('/') == "works" && s.ctx.defects.has("works-index-missing") {
        // The list query orders by citations: without its index, a full scan.
        factor *= SEQ_SCAN_FACTOR;
    }
    tokio::time::sleep(s.service_time(factor)).await;
    let limit = query
        .split('&')
        .find_map(|kv| {
            kv.strip_prefix("per_page=")
                .or_else(|| kv.strip_prefix("limit="))
        })
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(25)
        .min(200);
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (table, id) = match segs.as_slice() {
        ["works"] => ("works", None),
        ["works", id] => ("works", Some(*id)),
        ["authors"] => ("authors", None),
        ["authors", id] => ("authors", Some(*id)),
        _ => return Ok(respond(404, json!({"detail": "Not Found"}), &[])),
    };
    let ctx = s.ctx.clone();
    let (table_s, id_s) = (table.to_string(), id.map(String::from));
    let rows = tokio::task::spawn_blocking(move || {
        crate::stack::postgres::select_json(&ctx, &db_pod, &table_s, id_s.as_deref(), limit)
    })
    .await;
    Ok(match rows {
        Ok(Ok(rows)) => match id {
            Some(_) => match rows.into_iter().next() {
                Some(r) => respond(200, r, &[]),
                None => respond(
                    404,
                    json!({"detail": format!("{} not found", &table[..table.len() - 1])}),
                    &[],
                ),
            },
            None => respond(
                200,
                json!({"meta": {"count": rows.len(), "per_page": limit}, "results": rows}),
                &[],
            ),
        },
        Ok(Err(e)) => respond(500, json!({"detail": format!("database error: {e}")}), &[]),
        Err(_) => respond(500, json!({"detail": "internal error"}), &[]),
    })
}

/// Starts the data plane and publishes its address on the envoy Service.
pub async fn start(
    ctx: Ctx,
    model: LatencyModel,
    seed: u64,
    stop: watch::Receiver<bool>,
) -> Result<SocketAddr, DataPlaneError> {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(DataPlaneError::Bind)?;
    let addr = listener.local_addr().map_err(DataPlaneError::Bind)?;
    let shared = Arc::new(SharedHandle(Shared {
        routes: Mutex::new(HashMap::new()),
        ctx: ctx.clone(),
        model,
        rr: Mutex::new(HashMap::new()),
        endpoints: Mutex::new(HashMap::new()),
        conns: Mutex::new(HashMap::new()),
        windows: Mutex::new(HashMap::new()),
        pods: Mutex::new(HashMap::new()),
        rng: Mutex::new(rand::rngs::StdRng::seed_from_u64(seed ^ 0xda7a)),
        certs: Mutex::new(HashMap::new()),
    }));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver(Arc::downgrade(&shared))));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    tokio::spawn(publish(ctx.clone(), addr, stop.clone()));
    let mut stop_accept = stop.clone();
    tokio::spawn(async move {
        loop {
            let (stream, peer) = tokio::select! {
                c = listener.accept() => match c { Ok(c) => c, Err(_) => continue },
                _ = stop_accept.changed() => return,
            };
            // Envoy sets TCP_NODELAY: without it a response written in several TLS
            // records waits for the client's delayed ACK (tens of ms of false latency).
            let _ = stream.set_nodelay(true);
            let acceptor = acceptor.clone();
            let shared = shared.clone();
            let mut stop_conn = stop.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |req| handle(shared.clone(), peer, req));
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let conn = builder.serve_connection(TokioIo::new(tls), svc);
                tokio::select! {
                    _ = conn => {}
                    _ = stop_conn.changed() => {}
                }
            });
        }
    });
    Ok(addr)
}

/// Keeps the envoy Service's load balancer status pointing at the listener.
async fn publish(ctx: Ctx, addr: SocketAddr, stop: watch::Receiver<bool>) {
    crate::ctx::reconcile_loop(ctx, &[("", "services")], stop, move |ctx| {
        let Some(svc) = ctx.client.get("", "services", Some("projectcontour"), "envoy") else { return };
        let want = json!({"ingress": [{"ip": addr.ip().to_string(), "ports": [{"port": addr.port(), "protocol": "TCP"}]}]});
        if svc.pointer("/status/loadBalancer") != Some(&want) {
            let _ = ctx.client.patch_status("", "services", Some("projectcontour"), "envoy", json!({"loadBalancer": want}));
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(lifecycle: Value) -> Value {
        json!({"spec": {"containers": [{"name": "a"}, {"name": "b", "lifecycle": lifecycle}]}})
    }

    #[test]
    fn prestop_sleeps() {
        let exec = pod(json!({"preStop": {"exec": {"command": ["sleep", "5"]}}}));
        assert_eq!(prestop_sleep(&exec), Duration::from_secs(5));
        let shell =
            pod(json!({"preStop": {"exec": {"command": ["/bin/sh", "-c", "/bin/sleep 2.5"]}}}));
        assert_eq!(prestop_sleep(&shell), Duration::from_millis(2500));
        let action = pod(json!({"preStop": {"sleep": {"seconds": 7}}}));
        assert_eq!(prestop_sleep(&action), Duration::from_secs(7));
        // A hook that does not sleep does not keep the pod serving.
        let other = pod(json!({"preStop": {"exec": {"command": ["nginx", "-s", "quit"]}}}));
        assert_eq!(prestop_sleep(&other), Duration::ZERO);
        assert_eq!(
            prestop_sleep(&json!({"spec": {"containers": [{}]}})),
            Duration::ZERO
        );
    }
}
