//! Exec, logs, the service proxy and the provider endpoint, through kube-rs.

use std::time::Duration;

use futures::{AsyncBufReadExt, StreamExt};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, AttachParams, LogParams, PostParams};
use kube::{Client, Config};
use serde_json::{json, Value};
use stormdrill_twin::sim::{ExecOutput, HttpResponse};
use stormdrill_twin::{Twin, TwinOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A CoreDNS pod of the bare twin: generated names are fixed by the seed (0 here).
const COREDNS: &str = "coredns-779dfcfc88-gxdmj";
const WAIT: Duration = Duration::from_secs(20);

async fn twin() -> (Twin, Client) {
    let twin = Twin::start(TwinOptions::default())
        .await
        .expect("twin starts");
    let kc =
        kube::config::Kubeconfig::from_yaml(&twin.kubeconfig_yaml()).expect("kubeconfig parses");
    let mut config = Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("client config");
    // kube-rs retries 503 (the proxy's "no endpoints") 15 times with backoff.
    config.default_retry = false;
    let client = Client::try_from(config).expect("client");
    (twin, client)
}

struct Ran {
    stdout: String,
    stderr: String,
    status: k8s_openapi::apimachinery::pkg::apis::meta::v1::Status,
}

impl Ran {
    /// The exit code the status reports (0 for Success).
    fn exit_code(&self) -> i32 {
        if self.status.status.as_deref() == Some("Success") {
            return 0;
        }
        self.status
            .details
            .as_ref()
            .and_then(|d| d.causes.as_ref())
            .and_then(|c| c.iter().find(|c| c.reason.as_deref() == Some("ExitCode")))
            .and_then(|c| c.message.as_deref())
            .and_then(|m| m.parse().ok())
            .unwrap_or(-1)
    }
}

async fn exec_with(
    client: &Client,
    ns: &str,
    pod: &str,
    cmd: &[&str],
    stdin: Option<&[u8]>,
) -> Result<Ran, kube::Error> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let ap = AttachParams::default().stdin(stdin.is_some());
    let mut p = tokio::time::timeout(WAIT, pods.exec(pod, cmd.to_vec(), &ap))
        .await
        .expect("exec connects in time")?;
    if let Some(input) = stdin {
        let mut w = p.stdin().unwrap();
        w.write_all(input).await.unwrap();
        w.shutdown().await.unwrap();
        drop(w);
    }
    let mut out = p.stdout().unwrap();
    let mut err = p.stderr().unwrap();
    let status = p.take_status().unwrap();
    let (mut so, mut se) = (Vec::new(), Vec::new());
    let io = async {
        let (a, b) = tokio::join!(out.read_to_end(&mut so), err.read_to_end(&mut se));
        a.unwrap();
        b.unwrap();
    };
    tokio::time::timeout(WAIT, io)
        .await
        .expect("output in time");
    let status = tokio::time::timeout(WAIT, status)
        .await
        .expect("status in time")
        .expect("a status");
    tokio::time::timeout(WAIT, p.join())
        .await
        .expect("session ends")
        .expect("session ends cleanly");
    Ok(Ran {
        stdout: String::from_utf8(so).unwrap(),
        stderr: String::from_utf8(se).unwrap(),
        status,
    })
}

async fn exec(client: &Client, ns: &str, pod: &str, cmd: &[&str]) -> Ran {
    exec_with(client, ns, pod, cmd, None).await.expect("exec")
}

fn api_code(e: kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn exec_runs_builtin_commands() {
    let (_twin, client) = twin().await;

    let r = exec(&client, "kube-system", COREDNS, &["echo", "hello"]).await;
    assert_eq!(r.stdout, "hello\n");
    assert_eq!(r.status.status.as_deref(), Some("Success"));
    assert_eq!(r.exit_code(), 0);

    let r = exec(&client, "kube-system", COREDNS, &["false"]).await;
    assert_eq!(r.status.status.as_deref(), Some("Failure"));
    assert_eq!(r.status.reason.as_deref(), Some("NonZeroExitCode"));
    assert_eq!(r.exit_code(), 1);

    let r = exec(&client, "kube-system", COREDNS, &["no-such-tool", "--x"]).await;
    assert_eq!(r.exit_code(), 127);
    assert!(r.stderr.contains("no-such-tool: not found"), "{}", r.stderr);

    let r = exec(&client, "kube-system", COREDNS, &["hostname"]).await;
    assert_eq!(r.stdout, format!("{COREDNS}\n"));
    let r = exec(&client, "kube-system", COREDNS, &["cat", "/etc/hostname"]).await;
    assert_eq!(r.stdout, format!("{COREDNS}\n"));

    let r = exec(&client, "kube-system", COREDNS, &["env"]).await;
    assert!(
        r.stdout.contains(&format!("HOSTNAME={COREDNS}\n")),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("KUBERNETES_SERVICE_HOST="),
        "{}",
        r.stdout
    );

    let r = exec(
        &client,
        "kube-system",
        COREDNS,
        &[
            "sh",
            "-c",
            "echo \"a  b\" $HOSTNAME && false || echo fallback; exit 3",
        ],
    )
    .await;
    assert_eq!(r.stdout, format!("a  b {COREDNS}\nfallback\n"));
    assert_eq!(r.exit_code(), 3);

    let r = exec(&client, "kube-system", COREDNS, &["sh", "-c", "nope 2>&1"]).await;
    assert_eq!(r.exit_code(), 127);
    assert!(r.stdout.contains("sh: nope: not found"), "{}", r.stdout);

    // stdin, ended with the v5 close signal.
    let r = exec_with(
        &client,
        "kube-system",
        COREDNS,
        &["sh", "-c", "cat | grep b"],
        Some(b"a\nb\nc b\n"),
    )
    .await
    .unwrap();
    assert_eq!(r.stdout, "b\nc b\n");

    let started = std::time::Instant::now();
    let r = exec(&client, "kube-system", COREDNS, &["sleep", "0.2"]).await;
    assert_eq!(r.exit_code(), 0);
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn exec_resolves_service_names_like_coredns() {
    let (twin, client) = twin().await;
    let svcs: Api<Service> = Api::namespaced(client.clone(), "kube-system");
    let ip = svcs
        .get("kube-dns")
        .await
        .unwrap()
        .spec
        .unwrap()
        .cluster_ip
        .unwrap();

    let r = exec(
        &client,
        "kube-system",
        COREDNS,
        &["nslookup", "kube-dns.kube-system.svc.cluster.local"],
    )
    .await;
    assert_eq!(r.exit_code(), 0, "{}", r.stdout);
    assert!(r.stdout.contains(&format!("Address: {ip}")), "{}", r.stdout);

    // Search domains: `<svc>` in the pod's namespace, `<svc>.<ns>` anywhere.
    let r = exec(&client, "kube-system", COREDNS, &["nslookup", "kube-dns"]).await;
    assert!(r.stdout.contains(&format!("Address: {ip}")), "{}", r.stdout);
    let r = exec(
        &client,
        "kube-system",
        COREDNS,
        &["getent", "hosts", "kubernetes.default"],
    )
    .await;
    assert_eq!(r.exit_code(), 0);
    assert!(
        r.stdout
            .trim_end()
            .ends_with("kubernetes.default.svc.cluster.local"),
        "{}",
        r.stdout
    );

    let r = exec(&client, "kube-system", COREDNS, &["nslookup", "nosuch"]).await;
    assert_eq!(r.exit_code(), 1);
    assert!(r.stdout.contains("NXDOMAIN"), "{}", r.stdout);
    let r = exec(
        &client,
        "kube-system",
        COREDNS,
        &["getent", "hosts", "nosuch.default.svc.cluster.local"],
    )
    .await;
    assert_eq!(r.exit_code(), 2);

    // Handlers registered on an image get the other commands.
    twin.ctx()
        .sim
        .register_exec("registry.k8s.io/coredns/coredns", |req| {
            if req.command.first().map(String::as_str) == Some("coredns") {
                ExecOutput::ok(format!("CoreDNS-1.12.0 in {}\n", req.pod))
            } else {
                ExecOutput::not_found(&req.command[0])
            }
        });
    let r = exec(
        &client,
        "kube-system",
        COREDNS,
        &["sh", "-c", "coredns -version"],
    )
    .await;
    assert_eq!(r.stdout, format!("CoreDNS-1.12.0 in {COREDNS}\n"));
}

#[tokio::test]
async fn exec_errors_are_upstreams() {
    let (_twin, client) = twin().await;
    let (code, msg) = api_code(
        exec_with(&client, "kube-system", "nope", &["true"], None)
            .await
            .err()
            .expect("no such pod"),
    );
    assert_eq!(code, 404, "{msg}");

    let pods: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    let err = pods
        .exec(
            COREDNS,
            vec!["true"],
            &AttachParams::default().container("other"),
        )
        .await
        .err()
        .expect("no such container");
    let (code, msg) = api_code(err);
    assert_eq!(code, 400);
    assert!(msg.contains("not valid"), "{msg}");

    // A pod without a node.
    let pending: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "pending"},
        "spec": {"nodeSelector": {"no": "such-node"},
                 "containers": [{"name": "c", "image": "busybox:1.36"}]}
    }))
    .unwrap();
    let default_pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    default_pods
        .create(&PostParams::default(), &pending)
        .await
        .unwrap();
    let (code, msg) = api_code(
        exec_with(&client, "default", "pending", &["true"], None)
            .await
            .err()
            .expect("not scheduled"),
    );
    assert_eq!(code, 400);
    assert!(msg.contains("does not have a host assigned"), "{msg}");

    // The pod's node powered off: the API server cannot reach its kubelet.
    provider(
        &client,
        "POST",
        "/twin/v1/nodes/twin-control-plane/power",
        json!({"state": "off"}),
    )
    .await
    .unwrap();
    let (code, msg) = api_code(
        exec_with(&client, "kube-system", COREDNS, &["true"], None)
            .await
            .err()
            .expect("node off"),
    );
    assert_eq!(code, 500);
    assert!(msg.contains("error dialing backend"), "{msg}");
}

#[tokio::test]
async fn logs_and_follow() {
    let (twin, client) = twin().await;
    let sim = &twin.ctx().sim;
    for i in 1..=5 {
        sim.log("kube-system", COREDNS, "coredns", &format!("line {i}"));
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    let all = pods.logs(COREDNS, &LogParams::default()).await.unwrap();
    // The kubelet's own line comes first, then what the container wrote.
    assert_eq!(
        all,
        "Started container\nline 1\nline 2\nline 3\nline 4\nline 5\n"
    );
    let tail = pods
        .logs(
            COREDNS,
            &LogParams {
                tail_lines: Some(2),
                timestamps: true,
                container: Some("coredns".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let lines: Vec<&str> = tail.lines().collect();
    assert_eq!(lines.len(), 2, "{tail}");
    assert!(lines[1].ends_with(" line 5"), "{tail}");
    assert!(chrono::DateTime::parse_from_rfc3339(lines[1].split(' ').next().unwrap()).is_ok());

    let err = pods
        .logs(
            COREDNS,
            &LogParams {
                previous: true,
                ..Default::default()
            },
        )
        .await
        .expect_err("no previous container");
    assert_eq!(api_code(err).0, 400);

    // Following: old lines, then new ones as they are written.
    let stream = pods
        .log_stream(
            COREDNS,
            &LogParams {
                follow: true,
                tail_lines: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut lines = stream.lines();
    let first = tokio::time::timeout(WAIT, lines.next()).await.unwrap();
    assert_eq!(first.unwrap().unwrap(), "line 5");
    sim.log("kube-system", COREDNS, "coredns", "line 6");
    let next = tokio::time::timeout(WAIT, lines.next()).await.unwrap();
    assert_eq!(next.unwrap().unwrap(), "line 6");
    // A restart ends the follow (the container instance it followed is gone).
    sim.restart_container("kube-system", COREDNS, "coredns");
    let end = tokio::time::timeout(WAIT, lines.next()).await.unwrap();
    assert!(end.is_none());
}

async fn raw(
    client: &Client,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<String, kube::Error> {
    let mut b = hyper::Request::builder().method(method).uri(path);
    if body.is_some() {
        b = b.header("content-type", "application/json");
    }
    let req = b
        .body(
            body.map(|v| serde_json::to_vec(&v).unwrap())
                .unwrap_or_default(),
        )
        .unwrap();
    tokio::time::timeout(WAIT, client.request_text(req))
        .await
        .unwrap_or_else(|_| panic!("{method} {path} answered in time"))
}

async fn provider(
    client: &Client,
    method: &str,
    path: &str,
    body: Value,
) -> Result<Value, kube::Error> {
    let text = raw(client, method, path, Some(body)).await?;
    Ok(serde_json::from_str(&text).unwrap())
}

#[tokio::test]
async fn service_proxy_reaches_a_registered_handler() {
    let (twin, client) = twin().await;
    twin.ctx()
        .sim
        .register_http("example.com/web", 8080, |req| {
            HttpResponse::text(200, format!("{} {} from {}", req.method, req.path, req.pod))
        });
    let ns = "default";
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let svcs: Api<Service> = Api::namespaced(client.clone(), ns);
    svcs.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"},
                     "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
        }))
        .unwrap(),
    )
    .await
    .unwrap();

    // No Ready pod yet.
    let err = raw(
        &client,
        "GET",
        "/api/v1/namespaces/default/services/web/proxy/",
        None,
    )
    .await
    .expect_err("no endpoints");
    let (code, msg) = api_code(err);
    assert_eq!(code, 503);
    assert_eq!(msg, "no endpoints available for service \"web\"");

    pods.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-0", "labels": {"app": "web"}},
            "spec": {"nodeName": "dirqual1",
                     "containers": [{"name": "web", "image": "example.com/web:1.0",
                                     "ports": [{"name": "http", "containerPort": 8080}]}]}
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    // The kubelet starts it and marks it Ready (status written by the test would race it).
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let p = pods.get("web-0").await.unwrap();
        let ready = p
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        if ready {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "web-0 never Ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The endpoints controller publishes the Ready pod a moment later, as upstream.
    let deadline = tokio::time::Instant::now() + WAIT;
    while raw(
        &client,
        "GET",
        "/api/v1/namespaces/default/services/web/proxy/hello",
        None,
    )
    .await
    .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "web-0 never became an endpoint"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for path in [
        "/api/v1/namespaces/default/services/web/proxy/hello?x=1",
        "/api/v1/namespaces/default/services/web:http/proxy/hello?x=1",
        "/api/v1/namespaces/default/services/http:web:80/proxy/hello?x=1",
    ] {
        let text = tokio::time::timeout(WAIT, raw(&client, "GET", path, None))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(text, "GET /hello?x=1 from web-0", "{path}");
    }
    let text = raw(
        &client,
        "POST",
        "/api/v1/namespaces/default/services/web/proxy/",
        Some(json!({})),
    )
    .await
    .unwrap();
    assert_eq!(text, "POST / from web-0");

    // The pod proxy: that pod's port (a number; none: its first container port).
    for path in [
        "/api/v1/namespaces/default/pods/web-0:8080/proxy/hello?x=1",
        "/api/v1/namespaces/default/pods/web-0/proxy/hello?x=1",
    ] {
        let text = raw(&client, "GET", path, None).await.unwrap();
        assert_eq!(text, "GET /hello?x=1 from web-0", "{path}");
    }
    let (code, msg) = api_code(
        raw(
            &client,
            "GET",
            "/api/v1/namespaces/default/pods/web-0:9999/proxy/metrics",
            None,
        )
        .await
        .expect_err("nothing listens on 9999"),
    );
    assert_eq!(code, 503);
    assert!(
        msg.starts_with("error trying to reach service: dial tcp ")
            && msg.ends_with(":9999: connect: connection refused"),
        "{msg}"
    );
    let (code, _) = api_code(
        raw(
            &client,
            "GET",
            "/api/v1/namespaces/default/pods/nope:8080/proxy/",
            None,
        )
        .await
        .expect_err("no such pod"),
    );
    assert_eq!(code, 404);

    // From inside a pod: DNS, then the Service's endpoints.
    let r = exec(
        &client,
        "kube-system",
        COREDNS,
        &["wget", "-qO-", "http://web.default/in-cluster"],
    )
    .await;
    assert_eq!(r.stdout, "GET /in-cluster from web-0");
    let r = exec(
        &client,
        "kube-system",
        COREDNS,
        &["curl", "-sf", "http://web.default.svc.cluster.local:81/"],
    )
    .await;
    assert_eq!(r.exit_code(), 7, "{}", r.stderr);

    // With every CoreDNS pod's node powered off, names no longer resolve.
    provider(
        &client,
        "POST",
        "/twin/v1/nodes/twin-control-plane/power",
        json!({"state": "off"}),
    )
    .await
    .unwrap();
    let r = exec(&client, ns, "web-0", &["nslookup", "web"]).await;
    assert_eq!(r.exit_code(), 1);
    assert!(
        r.stdout.contains("no servers could be reached"),
        "{}",
        r.stdout
    );

    let err = raw(
        &client,
        "GET",
        "/api/v1/namespaces/default/services/web:9999/proxy/",
        None,
    )
    .await
    .err()
    .unwrap();
    assert_eq!(api_code(err).0, 503);
    let err = raw(
        &client,
        "GET",
        "/api/v1/namespaces/default/services/nope/proxy/",
        None,
    )
    .await
    .err()
    .unwrap();
    assert_eq!(api_code(err).0, 404);
}

#[tokio::test]
async fn provider_power_and_ground_truth() {
    let (_twin, client) = twin().await;
    let off = provider(
        &client,
        "POST",
        "/twin/v1/nodes/dirqual2/power",
        json!({"state": "off"}),
    )
    .await
    .unwrap();
    assert_eq!(
        off,
        json!({"node": "dirqual2", "state": "off", "changed": true})
    );
    let again = provider(
        &client,
        "POST",
        "/twin/v1/nodes/dirqual2/power",
        json!({"state": "off"}),
    )
    .await
    .unwrap();
    assert_eq!(again["changed"], false);
    let state: Value = serde_json::from_str(
        &raw(&client, "GET", "/twin/v1/nodes/dirqual2/power", None)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(state["state"], "off");
    let on = raw(
        &client,
        "POST",
        "/twin/v1/nodes/dirqual2/power?state=on",
        None,
    )
    .await
    .unwrap();
    assert!(on.contains("\"changed\":true"), "{on}");

    let events: Vec<Value> = serde_json::from_str(
        &raw(&client, "GET", "/twin/v1/events?since=0", None)
            .await
            .unwrap(),
    )
    .unwrap();
    let power: Vec<&str> = events
        .iter()
        .filter(|e| e["kind"] == "node" && e["object"] == "dirqual2")
        .filter_map(|e| e["state"].as_str())
        .filter(|s| s.starts_with("Powered"))
        .collect();
    assert_eq!(power, ["PoweredOff", "PoweredOn"]);
    let last = events.last().unwrap()["seq"].as_u64().unwrap();
    let none: Vec<Value> = serde_json::from_str(
        &raw(
            &client,
            "GET",
            &format!("/twin/v1/events?since={last}"),
            None,
        )
        .await
        .unwrap(),
    )
    .unwrap();
    assert!(none.iter().all(|e| e["seq"].as_u64().unwrap() > last));

    let err = provider(
        &client,
        "POST",
        "/twin/v1/nodes/nope/power",
        json!({"state": "off"}),
    )
    .await
    .err()
    .unwrap();
    assert_eq!(api_code(err).0, 404);
    let err = provider(
        &client,
        "POST",
        "/twin/v1/nodes/dirqual1/power",
        json!({"state": "maybe"}),
    )
    .await
    .err()
    .unwrap();
    assert_eq!(api_code(err).0, 400);

    let crash = provider(
        &client,
        "POST",
        &format!("/twin/v1/pods/kube-system/{COREDNS}/crash"),
        json!({}),
    )
    .await
    .unwrap();
    assert_eq!(crash["crash"], "requested");

    let timing: Value =
        serde_json::from_str(&raw(&client, "GET", "/twin/v1/timing", None).await.unwrap()).unwrap();
    assert_eq!(timing["name"], "fast");
    assert!(timing["delaysMs"]["nodeMonitorGrace"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn exec_stream_survives_many_sessions() {
    // Sessions run concurrently and each ends cleanly.
    let (_twin, client) = twin().await;
    let runs = futures::stream::iter(0..8)
        .map(|i| {
            let client = client.clone();
            async move {
                let word = format!("w{i}");
                let r = exec(&client, "kube-system", COREDNS, &["echo", &word]).await;
                assert_eq!(r.stdout, format!("{word}\n"));
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>();
    tokio::time::timeout(WAIT, runs).await.unwrap();
}
