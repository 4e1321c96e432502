//! The load generator and measurement engine against local test servers (axum on
//! 127.0.0.1, the twin for HTTPS). Every load here is bounded in time and count.

use std::{
    collections::BTreeSet,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use axum::{
    extract::{ConnectInfo, State},
    http::StatusCode,
    Router,
};
use futures::future::BoxFuture;
use stormdrill::{
    cli::RunArgs,
    load::{LoadConfig, LoadReport, LoadRun, Mix},
    measure::{
        drill::{DegradedCheck, Drill},
        observe::{HealthSample, HealthTx, ObserveError, Observer},
        steady::{self, Deadlines, HealthTrack, Slo, SteadyRule},
        timeline,
    },
    target::TargetKind,
    verdict::Verdict,
};

/// What the test server does: stall requests arriving in [from, to) after `start` until
/// `to`; answer 503 while `failing`; remember peers.
struct Behaviour {
    start: Instant,
    stall: Option<(Duration, Duration)>,
    failing: AtomicBool,
    peers: Mutex<BTreeSet<IpAddr>>,
    paths: Mutex<BTreeSet<String>>,
}

impl Behaviour {
    fn new(stall: Option<(Duration, Duration)>) -> Arc<Self> {
        Arc::new(Behaviour {
            start: Instant::now(),
            stall,
            failing: AtomicBool::new(false),
            peers: Mutex::new(BTreeSet::new()),
            paths: Mutex::new(BTreeSet::new()),
        })
    }
}

async fn handler(
    State(b): State<Arc<Behaviour>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    uri: axum::http::Uri,
) -> (StatusCode, &'static str) {
    b.peers.lock().unwrap().insert(peer.ip());
    b.paths.lock().unwrap().insert(uri.path().to_owned());
    if let Some((from, to)) = b.stall {
        let t = b.start.elapsed();
        if t >= from && t < to {
            tokio::time::sleep_until((b.start + to).into()).await;
        }
    }
    if b.failing.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "down")
    } else {
        (StatusCode::OK, "ok")
    }
}

/// Serves `b` on 127.0.0.1; returns the base URL.
async fn serve(b: Arc<Behaviour>) -> http::Uri {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().fallback(handler).with_state(b);
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    format!("http://{addr}/").parse().unwrap()
}

async fn run(cfg: LoadConfig) -> LoadReport {
    tokio::time::timeout(Duration::from_secs(60), async {
        LoadRun::start(cfg).await.unwrap().wait().await.unwrap()
    })
    .await
    .expect("a bounded load ends by itself")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stall_shows_in_open_loop_figures_and_hides_in_closed_loop_ones() {
    // The server stalls every request arriving between 1.5 s and 3.5 s until 3.5 s; window
    // 2 ([2 s, 3 s)) lies wholly inside the stall.
    let stall = Some((Duration::from_millis(1500), Duration::from_millis(3500)));
    let (open_b, closed_b) = (Behaviour::new(stall), Behaviour::new(stall));
    let (open_url, closed_url) = (serve(open_b).await, serve(closed_b).await);

    let mut open = LoadConfig::open(open_url, 100.0);
    open.duration = Duration::from_secs(5);
    open.mix = Mix::single("/works/1").unwrap();
    let mut closed = LoadConfig::closed(closed_url, 4);
    closed.duration = Duration::from_secs(5);
    closed.max_requests = Some(200_000);
    closed.mix = Mix::single("/works/1").unwrap();
    let (o, c) = tokio::join!(run(open), run(closed));

    // Open loop: every request was sent on schedule and the stall's requests carry it,
    // measured from their intended send time.
    assert_eq!(o.totals.sent, 500);
    assert_eq!(o.totals.counts.ok, 500);
    let w1 = o.windows.iter().find(|w| w.index == 1).unwrap();
    let w2 = o.windows.iter().find(|w| w.index == 2).unwrap();
    assert!(w1.p99_us >= 1_800_000, "window 1 p99 {} us", w1.p99_us);
    assert!(w2.p99_us >= 1_300_000, "window 2 p99 {} us", w2.p99_us);
    assert!(w1.sent >= 95 && w2.sent >= 95, "{} {}", w1.sent, w2.sent);
    assert!(o.totals.p99_ms >= 1500.0, "open p99 {} ms", o.totals.p99_ms);
    let w0 = o.windows.iter().find(|w| w.index == 0).unwrap();
    assert!(w0.p99_us < 1_000_000, "before the stall: {} us", w0.p99_us);

    // Closed loop: the 4 connections sat in the stall and sent nothing else, so the
    // percentiles stay low and only the max tells.
    assert!(
        c.totals.sent > 1000,
        "closed loop sent only {}",
        c.totals.sent
    );
    assert!(c.totals.p99_ms < 500.0, "closed p99 {} ms", c.totals.p99_ms);
    assert!(
        c.totals.max_ms >= 1500.0,
        "closed max {} ms",
        c.totals.max_ms
    );
    let quiet = c.windows.iter().find(|w| w.index == 2).unwrap();
    assert_eq!(
        quiet.sent, 0,
        "nothing is sent while every connection waits"
    );
}

/// Healthy unless the flag says otherwise; reports changes every 20 ms.
struct FlagObserver(Arc<AtomicBool>);

impl Observer for FlagObserver {
    fn name(&self) -> String {
        "api-pods".into()
    }

    fn run(self: Box<Self>, tx: HealthTx) -> BoxFuture<'static, Result<(), ObserveError>> {
        Box::pin(async move {
            let mut last = None;
            loop {
                let down = self.0.load(Ordering::Relaxed);
                if last != Some(down) {
                    let detail = if down { "0/1 Ready" } else { "1/1 Ready" };
                    if tx
                        .send(HealthSample::now(
                            Arc::from("api-pods"),
                            !down,
                            detail.into(),
                        ))
                        .is_err()
                    {
                        return Ok(());
                    }
                    last = Some(down);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_measures_detection_recovery_and_the_degraded_period() {
    let b = Behaviour::new(None);
    let url = serve(b.clone()).await;
    let mut cfg = LoadConfig::open(url, 200.0);
    cfg.duration = Duration::from_secs(30);
    cfg.window = Duration::from_millis(200);
    cfg.timeout = Duration::from_secs(2);
    cfg.mix = Mix::single("/").unwrap();
    let rule = SteadyRule {
        slo: Slo {
            p99_ms: 200.0,
            error_rate_pct: 1.0,
        },
        windows: 3,
    };
    let pods_down = Arc::new(AtomicBool::new(false));
    let mut drill = Drill::start(cfg, rule).await.unwrap();
    drill
        .observers_mut()
        .spawn(Box::new(FlagObserver(pods_down.clone())));

    let steady = drill
        .wait_steady(Deadlines {
            absolute_s: 10.0,
            no_progress_s: Some(5.0),
        })
        .await
        .unwrap()
        .expect("steady before the fault");
    assert!(steady.p99_ms <= 200.0);

    // The fault: 503s for 1 s; the pods come back 0.6 s after the errors stop.
    b.failing.store(true, Ordering::Relaxed);
    let t0 = drill.fault_started(Instant::now());
    pods_down.store(true, Ordering::Relaxed);
    assert!(drill
        .check_degraded(DegradedCheck::ErrorRateBelow(1.0))
        .is_none());
    assert!(drill
        .check_degraded(DegradedCheck::P99Below(1000.0))
        .is_none());
    tokio::time::sleep(Duration::from_secs(1)).await;
    b.failing.store(false, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(600)).await;
    pods_down.store(false, Ordering::Relaxed);

    let waited = drill
        .wait_recovered(Duration::from_secs(10), Some(Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(waited.failed.is_none(), "{:?}", waited.failed);
    let r = &waited.recovery;
    assert_eq!(r.t0_s, t0);
    let rto = r.rto_s.unwrap();
    // Recovery waits for the observer (1.6 s) and the window boundary after it.
    assert!((1.5..=2.5).contains(&rto), "rto {rto}");
    assert!(r.detection_after_s().unwrap() < 0.5, "{:?}", r.detection);
    let pods = &r.components[0];
    assert!(pods.went_unhealthy);
    let back = pods.recovered_after_s.unwrap();
    assert!((1.5..2.0).contains(&back), "pods back after {back}");

    // The degraded period is judged now: errors failed it, latency did not.
    assert_eq!(waited.judged.len(), 2);
    let errors = &waited.judged[0];
    assert_eq!(errors.name, "error_rate_during_pct");
    assert!(!errors.pass && errors.figure >= 20.0, "{errors:?}");
    assert!(waited.judged[1].pass, "{:?}", waited.judged[1]);
    let during = drill.during_figures().unwrap();
    assert!(during.requests_lost >= 150, "{during:?}");
    // Once over, a new check is judged at once.
    let late = drill
        .check_degraded(DegradedCheck::ErrorRateBelow(90.0))
        .unwrap();
    assert!(late.pass);

    let (report, judged) = drill.finish().await;
    let report = report.unwrap();
    assert!(judged.is_empty());
    let names: Vec<&str> = report.phases.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(names, ["before", "during", "after"]);
    assert!(report.totals.sent < 30 * 200, "stopped early by finish");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_error_rate_abort_is_checked_on_every_window_of_the_fault() {
    use stormdrill::{fault::abort::Abort, measure::drill::ErrorRateAbort};

    let b = Behaviour::new(None);
    let url = serve(b.clone()).await;
    let mut cfg = LoadConfig::open(url, 200.0);
    cfg.duration = Duration::from_secs(20);
    cfg.window = Duration::from_millis(100);
    cfg.timeout = Duration::from_secs(2);
    cfg.mix = Mix::single("/").unwrap();
    let rule = SteadyRule {
        slo: Slo {
            p99_ms: 200.0,
            error_rate_pct: 1.0,
        },
        windows: 3,
    };
    let abort_rule = ErrorRateAbort {
        threshold_pct: 50.0,
        windows: 3,
    };
    let mut drill = Drill::start(cfg, rule).await.unwrap();

    // A fault that leaves the API serving: ten windows close, no abort.
    let abort = Abort::default();
    drill.fault_started(Instant::now());
    drill.watch_error_rate(abort_rule, abort.clone());
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(abort.reason(), None);
    assert!(drill.watching_error_rate());

    // Then the API fails mid-fault: the abort fires with no step running.
    b.failing.store(true, Ordering::Relaxed);
    let reason = tokio::time::timeout(Duration::from_secs(10), abort.triggered())
        .await
        .expect("the abort fires while the fault lasts");
    assert_eq!(
        reason,
        "the API error rate was above 50% for 3 consecutive windows"
    );

    // Once the degraded period is over, failures are the steady-state checks' business.
    let later = Abort::default();
    drill.watch_error_rate(abort_rule, later.clone());
    drill.end_degraded();
    assert!(!drill.watching_error_rate());
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(later.reason(), None);
    let (report, _) = drill.finish().await;
    assert!(report.unwrap().totals.counts.completed() > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_workers_keep_a_connection_each() {
    type Seen = Arc<Mutex<(BTreeSet<SocketAddr>, BTreeSet<String>, BTreeSet<String>)>>;
    async fn record(
        State(seen): State<Seen>,
        ConnectInfo(peer): ConnectInfo<SocketAddr>,
        headers: axum::http::HeaderMap,
        uri: axum::http::Uri,
    ) -> &'static str {
        let mut s = seen.lock().unwrap();
        s.0.insert(peer);
        let host = headers.get("host").and_then(|h| h.to_str().ok());
        s.1.insert(host.unwrap_or("(none)").to_owned());
        s.2.insert(uri.to_string());
        "ok"
    }
    let seen: Seen = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().fallback(record).with_state(seen.clone());
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    let mut cfg = LoadConfig::closed(format!("http://{addr}/base/").parse().unwrap(), 3);
    cfg.duration = Duration::from_secs(2);
    cfg.max_requests = Some(600);
    cfg.mix = Mix::single("/works/1").unwrap();
    let r = run(cfg).await;
    assert_eq!((r.totals.sent, r.totals.counts.ok), (600, 600));
    let s = seen.lock().unwrap();
    // Three workers, three connections, reused for every request.
    assert_eq!(s.0.len(), 3, "{:?}", s.0);
    // Origin-form requests under the base path, with the Host header set.
    assert_eq!(s.1, BTreeSet::from([addr.to_string()]));
    assert_eq!(s.2, BTreeSet::from(["/base/works/1".to_owned()]));
}

#[tokio::test]
async fn source_address_is_what_the_server_sees() {
    let b = Behaviour::new(None);
    let url = serve(b.clone()).await;
    let mut cfg = LoadConfig::open(url, 50.0);
    cfg.duration = Duration::from_millis(200);
    cfg.mix = Mix::single("/").unwrap();
    cfg.client.source_addr = Some("127.0.0.2".parse().unwrap());
    let r = run(cfg).await;
    assert_eq!(r.totals.counts.ok, 10);
    let peers: Vec<IpAddr> = b.peers.lock().unwrap().iter().copied().collect();
    assert_eq!(peers, ["127.0.0.2".parse::<IpAddr>().unwrap()]);

    // An address of no interface here is refused up front.
    let mut bad = LoadConfig::open("http://127.0.0.1:9/".parse().unwrap(), 1.0);
    bad.client.source_addr = Some("192.0.2.1".parse().unwrap());
    let e = LoadRun::start(bad).await.unwrap_err();
    assert!(e
        .to_string()
        .starts_with("source address 192.0.2.1 cannot be used"));
}

#[tokio::test]
async fn https_with_a_given_ca_and_errors_classified() {
    let twin = stormdrill_twin::Twin::start(stormdrill_twin::TwinOptions::default())
        .await
        .unwrap();
    let url: http::Uri = twin.url().parse().unwrap();
    let load = |ca: Option<Vec<u8>>| {
        let mut cfg = LoadConfig::open(url.clone(), 50.0);
        cfg.duration = Duration::from_millis(200);
        cfg.mix = Mix::single("/healthz").unwrap();
        cfg.timeout = Duration::from_secs(5);
        cfg.client.ca_pem = ca;
        run(cfg)
    };
    // No token: the twin answers 401 over TLS, so the handshake with its CA worked.
    let trusted = load(Some(twin.ca_pem().as_bytes().to_vec())).await;
    assert_eq!(trusted.totals.counts.err_4xx, 10, "{:?}", trusted.totals);
    // The system's roots do not know the twin's CA: connection errors, no latency.
    let untrusted = load(None).await;
    assert_eq!(
        untrusted.totals.counts.conn_errors, 10,
        "{:?}",
        untrusted.totals
    );
    assert_eq!(untrusted.totals.p99_ms, 0.0);
    // The closed loop's own connections do the same TLS handshake.
    let mut cfg = LoadConfig::closed(url.clone(), 2);
    cfg.duration = Duration::from_millis(300);
    cfg.max_requests = Some(20);
    cfg.mix = Mix::single("/healthz").unwrap();
    cfg.client.ca_pem = Some(twin.ca_pem().as_bytes().to_vec());
    let closed = run(cfg).await;
    assert_eq!(closed.totals.sent, 20);
    assert_eq!(closed.totals.counts.err_4xx, 20, "{:?}", closed.totals);
    twin.shutdown().await;

    let mut cfg = LoadConfig::open(url, 1.0);
    cfg.client.ca_pem = Some(b"not a pem".to_vec());
    assert_eq!(
        LoadRun::start(cfg).await.unwrap_err().to_string(),
        "invalid CA bundle: no certificate in it"
    );
}

#[test]
fn recovery_from_a_recorded_timeline_csv() {
    // 20 windows of 1 s: fine, a 4 s outage from t0 = 8 s, slow for 2 s, fine again.
    let mut text = format!("{}\n", timeline::HEADER);
    for i in 0..20 {
        let (p99, ok, err_5xx, timeouts) = match i {
            8..=11 => (10000.0, 20, 10, 20),
            12..=13 => (900.0, 50, 0, 0),
            _ => (45.5, 50, 0, 0),
        };
        text.push_str(&format!(
            "{i}.000,2026-01-01T00:00:{i:02}.000Z,50.0,12.000,30.000,{p99:.3},{p99:.3},{p99:.3},\
             {ok},0,0,{err_5xx},{timeouts},0,0.100,x\n"
        ));
    }
    let windows = timeline::parse_csv(&text).unwrap();
    assert_eq!(windows.len(), 20);
    let rule = SteadyRule::default();
    assert_eq!(steady::steady_since(&windows[..8], &rule, &[]), Some(0.0));
    assert_eq!(steady::steady_since(&windows[..16], &rule, &[]), None);
    let ceph = HealthTrack::new("ceph", vec![(0.0, true), (8.7, false), (13.2, true)]);
    let r = steady::analyse(&windows, &[ceph], &rule, 8.0, 20.0);
    // Ceph turns unhealthy at 8.7, before the first breaching window closes (9.0).
    let d = r.detection_after_s().unwrap();
    assert!((d - 0.7).abs() < 1e-9, "{d}");
    let slo_only = steady::analyse(&windows, &[], &rule, 8.0, 20.0);
    assert_eq!(slo_only.detection_after_s(), Some(1.0));
    // Window 13 ends slow and ceph is back at 13.2: the steady state starts at 14.
    assert_eq!(r.recovered_at_s, Some(14.0));
    assert_eq!(r.rto_s, Some(6.0));
    let c = &r.components[0];
    assert!((c.recovered_after_s.unwrap() - 5.2).abs() < 1e-9);
}

fn feature_dir(body: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("load.feature"), body).unwrap();
    std::fs::write(
        dir.path().join("profile.yaml"),
        "load: {window_ms: 250, timeout_s: 2, max_duration_s: 60, mix: mix.yaml}\n\
         steady: {windows: 3, timeout_s: 20, no_progress_s: 10}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("mix.yaml"),
        "ids: [W1, W2]\nrequests:\n  - {path: \"/works/{id}\", weight: 3}\n  - {path: /healthz}\n",
    )
    .unwrap();
    dir
}

fn run_args(dir: &std::path::Path, api_url: Option<http::Uri>) -> RunArgs {
    RunArgs {
        features: vec![dir.join("load.feature")],
        target: TargetKind::Twin,
        report_dir: dir.join("reports"),
        profile: Some(dir.join("profile.yaml")),
        seed: Some(3),
        run_id: Some("r1".into()),
        api_url,
        ..RunArgs::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_step_streams_a_timeline_and_records_figures() {
    let b = Behaviour::new(None);
    let url = serve(b.clone()).await;
    let dir = feature_dir(
        "Feature: load\n  Scenario: steady load\n    \
         Given the API receives 40 requests per second\n    \
         And the system is in steady state\n",
    );
    let outcome = stormdrill::run(run_args(dir.path(), Some(url)))
        .await
        .unwrap();
    assert_eq!(
        outcome.verdict,
        Verdict::Go,
        "{:?}",
        outcome.summary.reasons
    );

    let s = &outcome.summary.scenarios[0];
    assert_eq!(s.measurements["load_rate_target"], 40.0);
    assert!(s.measurements.contains_key("steady_wait_s"));
    assert!(
        s.measurements["requests_sent"] >= 30.0,
        "{:?}",
        s.measurements
    );
    let c = s
        .criteria
        .iter()
        .find(|c| c.name == "steady_state_windows")
        .unwrap();
    assert!(c.pass && c.figure == 3.0);

    let run_dir: PathBuf = dir.path().join("reports/r1");
    let text = std::fs::read_to_string(run_dir.join("timeline.csv")).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some(timeline::HEADER));
    let windows = timeline::parse_csv(&text).unwrap();
    assert!(windows.len() >= 3, "{text}");
    assert!(windows.iter().all(|w| w.len_s == 0.25));
    assert!(windows.iter().map(|w| w.counts.ok).sum::<u64>() >= 30);
    // The profile's mix was used.
    let paths = b.paths.lock().unwrap().clone();
    assert!(
        paths.contains("/healthz") && paths.contains("/works/W1"),
        "{paths:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_api_endpoint_the_rate_step_says_so() {
    let dir = feature_dir(
        "Feature: load\n  Scenario: no endpoint\n    \
         Given the API receives 40 requests per second\n",
    );
    let outcome = stormdrill::run(run_args(dir.path(), None)).await.unwrap();
    assert_eq!(outcome.verdict, Verdict::NoGo);
    let msg = outcome.summary.scenarios[0]
        .message
        .clone()
        .unwrap_or_default();
    assert!(msg.contains("the target has no API endpoint"), "{msg}");
}

async fn twin_client(twin: &stormdrill_twin::Twin) -> kube::Client {
    let kc = kube::config::Kubeconfig::from_yaml(&twin.kubeconfig_yaml()).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .unwrap();
    kube::Client::try_from(cfg).unwrap()
}

/// Waits (bounded) until the observer's latest sample satisfies `f`.
async fn until_status(
    set: &stormdrill::measure::observe::ObserverSet,
    name: &str,
    f: impl Fn(&stormdrill::measure::observe::ObserverStatus) -> bool,
) -> stormdrill::measure::observe::ObserverStatus {
    let mut changes = set.subscribe();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = set.status().into_iter().find(|s| s.name == name) {
            if f(&s) {
                return s;
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "{name}: {:?}", set.status());
        let _ = tokio::time::timeout(left, changes.changed()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_observers_follow_pods_and_nodes_on_the_twin() {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, DeleteParams, PostParams};
    use stormdrill::measure::observe::{self as obs, ObserverSet};

    let twin = stormdrill_twin::Twin::start(stormdrill_twin::TwinOptions::default())
        .await
        .unwrap();
    let client = twin_client(&twin).await;
    let mut set = ObserverSet::new();
    set.spawn(Box::new(obs::nodes_ready(&client)));
    set.spawn(Box::new(obs::pods_ready(&client, "default", "app=probe")));

    let nodes = until_status(&set, "nodes-ready", |s| s.healthy == Some(true)).await;
    assert!(nodes.detail.ends_with(" Ready"), "{}", nodes.detail);
    let none = until_status(&set, "pods-ready[default/app=probe]", |s| {
        s.healthy.is_some()
    })
    .await;
    assert_eq!(
        (none.healthy, none.detail.as_str()),
        (Some(false), "none found")
    );

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "probe-0", "labels": {"app": "probe"}},
        "spec": {"containers": [{"name": "c", "image": "registry.local/probe:1"}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let up = until_status(&set, "pods-ready[default/app=probe]", |s| {
        s.healthy == Some(true)
    })
    .await;
    assert_eq!(up.detail, "1/1 Ready");

    pods.delete("probe-0", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    until_status(&set, "pods-ready[default/app=probe]", |s| {
        s.detail == "none found"
    })
    .await;
    let tracks = set.tracks(Instant::now());
    let probe = tracks
        .iter()
        .find(|t| t.name.starts_with("pods-ready"))
        .unwrap();
    let flips: Vec<bool> = probe.samples.iter().map(|s| s.1).collect();
    assert_eq!(flips, [false, true, false]);
    set.stop();
    twin.shutdown().await;
}

#[tokio::test]
async fn timeouts_and_refused_connections_are_classified() {
    // Every request in the first 1.5 s waits until 1.5 s; the client gives up at 200 ms.
    let url = serve(Behaviour::new(Some((
        Duration::ZERO,
        Duration::from_millis(1500),
    ))))
    .await;
    let mut cfg = LoadConfig::open(url, 20.0);
    cfg.duration = Duration::from_millis(500);
    cfg.timeout = Duration::from_millis(200);
    cfg.mix = Mix::single("/").unwrap();
    let r = run(cfg).await;
    assert_eq!((r.totals.sent, r.totals.counts.timeouts), (10, 10));
    // A timeout's latency is the time it was given, at least: it counts in percentiles.
    assert!(r.totals.p50_ms >= 200.0, "{:?}", r.totals);
    assert_eq!(r.totals.requests_lost, 10);

    // Nothing listens on a port just released: connection errors.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cfg = LoadConfig::open(format!("http://127.0.0.1:{port}/").parse().unwrap(), 20.0);
    cfg.duration = Duration::from_millis(500);
    cfg.mix = Mix::single("/").unwrap();
    let r = run(cfg).await;
    assert_eq!(r.totals.counts.conn_errors, 10);
    assert_eq!(r.totals.error_rate_pct, 100.0);
}

/// A killed pod the API never noticed: the SLO windows and the nodes stay fine, so
/// an RTO measured to them alone is 0 s (what the chaos-pod scenario reported). With
/// the fault's target watched (`Fault::touches`, as the fault steps and game days
/// do), the RTO is the Deployment's real recovery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rto_of_a_pod_kill_includes_the_workload_it_hit() {
    use k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};
    use kube::api::{Api, ListParams, PostParams};
    use stormdrill::{
        fault::{pod_kill::PodKill, scale::WorkloadKind, Fault, FaultCtx, FaultKind},
        measure::{observe as obs, touched},
        target::power::TwinPower,
    };

    // Fast timing: the replacement is Ready within a fraction of a second, still an
    // RTO the blind measurement misses.
    let twin = stormdrill_twin::Twin::start(stormdrill_twin::TwinOptions::default())
        .await
        .unwrap();
    let client = twin_client(&twin).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "registry.local/web:1"}]}
            }
        }
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();

    // The API answers throughout: its windows never breach.
    let url = serve(Behaviour::new(None)).await;
    let mut cfg = LoadConfig::open(url, 100.0);
    cfg.duration = Duration::from_secs(60);
    cfg.window = Duration::from_millis(200);
    cfg.mix = Mix::single("/").unwrap();
    // The local server's latency is not under test: a generous p99 keeps a loaded
    // machine (other builds) from breaching windows the fault did not affect.
    let rule = SteadyRule {
        slo: Slo {
            p99_ms: 10_000.0,
            ..Slo::default()
        },
        windows: 3,
    };
    let mut drill = Drill::start(cfg, rule).await.unwrap();
    drill
        .observers_mut()
        .spawn(Box::new(obs::nodes_ready(&client)));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let victim = resolve_victim(&pods).await;
    let fault = PodKill {
        kind: FaultKind::PodKill,
        namespace: "default".into(),
        pods: vec![victim],
        grace_seconds: Some(0),
        owner: touched::Touched::Workload(stormdrill::fault::scale::Workload {
            kind: WorkloadKind::Deployment,
            namespace: "default".into(),
            name: "web".into(),
        }),
    };
    touched::watch(
        drill.observers_mut(),
        &client,
        &fault.touches(),
        Duration::from_secs(1),
    );
    drill
        .wait_steady(Deadlines {
            absolute_s: 30.0,
            no_progress_s: Some(20.0),
        })
        .await
        .unwrap()
        .expect("steady before the fault, the Deployment available");

    let ctx = FaultCtx {
        client: client.clone(),
        power: Arc::new(TwinPower::new(client.clone())),
    };
    let plan = fault.plan(&ctx).await.unwrap();
    let asked = Instant::now();
    fault.apply(&ctx, &plan).await.unwrap();
    let t0 = drill.fault_started(asked);
    let waited = drill
        .wait_recovered(Duration::from_secs(30), Some(Duration::from_secs(20)))
        .await
        .unwrap();
    assert!(waited.failed.is_none(), "{:?}", waited.failed);
    let r = &waited.recovery;
    let name = "deployment-available[default/web]";
    let web = r.components.iter().find(|c| c.name == name).unwrap();
    assert!(web.went_unhealthy, "{r:?}");
    let back = web.recovered_after_s.unwrap_or_else(|| panic!("{r:?}"));
    assert!(back > 0.0, "{r:?}");
    let rto = r.rto_s.unwrap();
    assert!(
        rto >= back,
        "rto {rto} before the Deployment was back ({back}): {r:?}"
    );
    assert_eq!(
        r.detection.as_ref().map(|d| d.source.as_str()),
        Some(format!("observer {name}").as_str())
    );

    // The same timeline judged without the fault's target: no detection, RTO 0.
    let until = drill.load().now_s();
    let without: Vec<HealthTrack> = drill
        .observers()
        .tracks(drill.load().origin())
        .into_iter()
        .filter(|t| t.name != name)
        .collect();
    let blind = drill
        .load()
        .with_windows(|w| steady::analyse(w, &without, &rule, t0, until));
    assert_eq!((blind.detection, blind.rto_s), (None, Some(0.0)));
    let _ = drill.finish().await;
    twin.shutdown().await;

    async fn resolve_victim(pods: &Api<Pod>) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let l = pods
                .list(&ListParams::default().labels("app=web"))
                .await
                .unwrap();
            if let Some(p) = l.items.first() {
                return p.metadata.name.clone().unwrap();
            }
            assert!(Instant::now() < deadline, "no pod of web");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
