//! `--ceph real`: a real Ceph cluster (Debian's ceph 16.2 packages) under the twin,
//! driven only through the Kubernetes API (OSD Deployments and pods, node power,
//! toolbox exec, the mgr service proxy). Skips, saying so, when the packages are
//! missing (`scripts/ceph-setup.sh` installs them; CI does).
//!
//! One test runs everything in sequence, so a single cluster is bootstrapped: ~1 min
//! of bootstrap plus the drills, each wait bounded. It ends with the calibration:
//! the same OSD drill on the simulated model (fast and realistic profiles), printed
//! beside the real cluster's figures (`cargo test -p stormdrill-twin --test ceph_real
//! -- --nocapture` shows them).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, Config};
use serde_json::{json, Value};
use stormdrill_twin::stack::ceph::backend::CephBackendKind;
use stormdrill_twin::stack::ceph::real::missing_binaries;
use stormdrill_twin::timing::Timing;
use stormdrill_twin::{Twin, TwinOptions};
use tokio::io::AsyncReadExt;

const NS: &str = "rook-ceph";
const STACK: &str = include_str!("../../fixtures/stack/10-rook-ceph.yaml");

async fn start(ceph: CephBackendKind, timing: Timing) -> (Twin, Client) {
    let twin = Twin::start(TwinOptions {
        ceph,
        timing,
        seed: 9,
        ..TwinOptions::default()
    })
    .await
    .expect("twin starts");
    let kc = kube::config::Kubeconfig::from_yaml(&twin.kubeconfig_yaml()).unwrap();
    let mut config = Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    config.default_retry = false;
    let client = Client::try_from(config).unwrap();
    // The Rook part of the documented stack: CephCluster, pools, StorageClasses, toolbox.
    for doc in serde_yaml::Deserializer::from_str(STACK) {
        let obj: Value = serde::Deserialize::deserialize(doc).unwrap();
        if obj.is_object() {
            twin.ctx()
                .client
                .create(obj)
                .expect("stack object accepted");
        }
    }
    (twin, client)
}

/// Polls `f` every 500 ms until it returns Some, or panics after `limit`.
async fn until<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let t = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(t.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

struct Ran {
    stdout: String,
    stderr: String,
    code: i32,
}

async fn toolbox(client: &Client) -> Option<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let list = pods
        .list(&ListParams::default().labels("app=rook-ceph-tools"))
        .await
        .ok()?;
    list.items
        .into_iter()
        .find(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .is_some_and(|ph| ph == "Running")
                && p.metadata.deletion_timestamp.is_none()
        })
        .and_then(|p| p.metadata.name)
}

/// Runs a command in the toolbox through pod exec, as the harness does.
async fn exec(client: &Client, cmd: &[&str]) -> Option<Ran> {
    let pod = toolbox(client).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let ap = AttachParams::default().stderr(true);
    let run = async {
        let mut p = pods.exec(&pod, cmd.to_vec(), &ap).await.ok()?;
        let mut out = p.stdout()?;
        let mut err = p.stderr()?;
        let status = p.take_status()?;
        let (mut so, mut se) = (Vec::new(), Vec::new());
        let (a, b) = tokio::join!(out.read_to_end(&mut so), err.read_to_end(&mut se));
        a.ok()?;
        b.ok()?;
        let status = status.await?;
        let code = if status.status.as_deref() == Some("Success") {
            0
        } else {
            status
                .details
                .and_then(|d| d.causes)
                .and_then(|c| {
                    c.into_iter()
                        .find(|c| c.reason.as_deref() == Some("ExitCode"))
                })
                .and_then(|c| c.message)
                .and_then(|m| m.parse().ok())
                .unwrap_or(-1)
        };
        Some(Ran {
            stdout: String::from_utf8_lossy(&so).into_owned(),
            stderr: String::from_utf8_lossy(&se).into_owned(),
            code,
        })
    };
    tokio::time::timeout(Duration::from_secs(70), run)
        .await
        .ok()
        .flatten()
}

async fn ceph_json(client: &Client, args: &[&str]) -> Option<Value> {
    let mut cmd = vec!["ceph"];
    cmd.extend_from_slice(args);
    cmd.extend(["-f", "json"]);
    let r = exec(client, &cmd).await?;
    if r.code != 0 {
        return None;
    }
    serde_json::from_str(r.stdout.trim()).ok()
}

fn pg_states(status: &Value) -> Vec<(String, u64)> {
    status
        .pointer("/pgmap/pgs_by_state")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .map(|s| {
                    (
                        s["state_name"].as_str().unwrap_or("").to_string(),
                        s["count"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Recovered, as the issue defines it: HEALTH_OK and every PG active+clean (a real
/// cluster reports HEALTH_OK while PGs still peer).
fn recovered(status: &Value) -> bool {
    let states = pg_states(status);
    status.pointer("/health/status") == Some(&json!("HEALTH_OK"))
        && !states.is_empty()
        && states.iter().all(|(s, _)| s == "active+clean")
}

fn health(status: &Value) -> &str {
    status
        .pointer("/health/status")
        .and_then(Value::as_str)
        .unwrap_or("?")
}

fn checks(status: &Value) -> BTreeSet<String> {
    status
        .pointer("/health/checks")
        .and_then(Value::as_object)
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

fn num_up(status: &Value) -> u64 {
    status
        .pointer("/osdmap/num_up_osds")
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// The PG state families the issue names, present in one status.
fn families(status: &Value) -> BTreeSet<&'static str> {
    pg_states(status)
        .iter()
        .map(|(s, _)| {
            let has = |w: &str| s.split('+').any(|x| x == w);
            if s == "active+clean" {
                "clean"
            } else if has("stale") || has("peering") || !has("active") {
                "peering/stale"
            } else if has("recovering") || has("recovery_wait") || has("backfilling") {
                "recovering"
            } else if has("undersized") || has("degraded") {
                "undersized+degraded"
            } else {
                "other"
            }
        })
        .collect()
}

async fn scale(client: &Client, deployment: &str, replicas: i32) {
    let d: Api<Deployment> = Api::namespaced(client.clone(), NS);
    d.patch(
        deployment,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": replicas}})),
    )
    .await
    .expect("scale");
}

async fn osd_pod(client: &Client, id: u32) -> Option<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    pods.list(&ListParams::default().labels(&format!("app=rook-ceph-osd,ceph-osd-id={id}")))
        .await
        .ok()?
        .items
        .into_iter()
        .find(|p| p.metadata.deletion_timestamp.is_none())
        .and_then(|p| p.metadata.name)
}

async fn power(client: &Client, node: &str, state: &str) {
    let req = http::Request::builder()
        .method("POST")
        .uri(format!("/twin/v1/nodes/{node}/power"))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&json!({"state": state})).unwrap())
        .unwrap();
    client.request_text(req).await.expect("power");
}

fn pid_alive(pid: u32) -> bool {
    // A reaped process has no /proc entry; a zombie would show state Z.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

fn backend_pid(twin: &Twin, name: &str) -> Option<u32> {
    twin.ctx()
        .ceph_backend
        .pids()
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, p)| p)
}

/// What one OSD drill saw (seconds from scaling the OSD to 0, or back to 1).
#[derive(Debug, Default)]
struct Drill {
    warn: Option<f64>,
    osd_down: Option<f64>,
    degraded: Option<f64>,
    health_ok: Option<f64>,
    clean: Option<f64>,
    sequence: Vec<String>,
}

/// Scale `rook-ceph-osd-ID` to 0, hold while degraded, scale back, wait for recovery;
/// sample `ceph status` through the toolbox all along.
async fn osd_drill(client: &Client, id: u32, hold: Duration, limit: Duration) -> Drill {
    let mut d = Drill::default();
    let push = |d: &mut Drill, s: &Value| {
        let f: Vec<&str> = families(s).into_iter().collect();
        let f = f.join(",");
        if d.sequence.last() != Some(&f) {
            d.sequence.push(f);
        }
    };
    let before = ceph_json(client, &["status"]).await.expect("status");
    assert!(recovered(&before), "drill starts healthy: {before}");
    let total = num_up(&before);
    push(&mut d, &before);
    let t0 = Instant::now();
    scale(client, &format!("rook-ceph-osd-{id}"), 0).await;
    loop {
        // When the answer arrived: the state held at some point during the call.
        if let Some(s) = ceph_json(client, &["status"]).await {
            let t = t0.elapsed().as_secs_f64();
            push(&mut d, &s);
            if d.warn.is_none() && health(&s) != "HEALTH_OK" {
                d.warn = Some(t);
            }
            if d.osd_down.is_none() && num_up(&s) < total {
                d.osd_down = Some(t);
            }
            if d.degraded.is_none() && checks(&s).contains("PG_DEGRADED") {
                d.degraded = Some(t);
            }
        }
        if (d.degraded.is_some() && t0.elapsed() >= hold) || t0.elapsed() > limit {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let t1 = Instant::now();
    scale(client, &format!("rook-ceph-osd-{id}"), 1).await;
    loop {
        if let Some(s) = ceph_json(client, &["status"]).await {
            let t = t1.elapsed().as_secs_f64();
            push(&mut d, &s);
            if d.health_ok.is_none() && health(&s) == "HEALTH_OK" {
                d.health_ok = Some(t);
            }
            if recovered(&s) {
                d.clean = Some(t);
                break;
            }
            if health(&s) != "HEALTH_OK" {
                d.health_ok = None;
            }
        }
        if t1.elapsed() > limit {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    d
}

fn fmt(t: Option<f64>) -> String {
    t.map_or("-".into(), |t| format!("{t:.1} s"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_ceph_under_the_twin() {
    let missing = missing_binaries();
    if !missing.is_empty() {
        println!(
            "SKIPPED real_ceph_under_the_twin: {} not installed (run scripts/ceph-setup.sh)",
            missing.join(", ")
        );
        return;
    }
    let t_start = Instant::now();
    let (twin, client) = start(CephBackendKind::Real, Timing::fast()).await;
    let mon_up = t_start.elapsed();

    // Bootstrap: HEALTH_OK, all PGs active+clean, data written — through the toolbox.
    let healthy = until("real cluster healthy", Duration::from_secs(240), || async {
        // Both block pools hold data, and nothing is still peering or being created.
        let df = ceph_json(&client, &["df"]).await?;
        let objects = |pool: &str| {
            df["pools"].as_array()?.iter().find(|p| p["name"] == pool)?["stats"]["objects"].as_u64()
        };
        if objects("nvme-pool")? < 100 || objects("hdd-pool")? < 100 {
            return None;
        }
        let s = ceph_json(&client, &["status"]).await?;
        (recovered(&s) && num_up(&s) == 6).then_some(s)
    })
    .await;
    let bootstrap = t_start.elapsed();
    assert_eq!(
        healthy.pointer("/osdmap/num_osds").and_then(Value::as_u64),
        Some(6)
    );
    let pools = ceph_json(&client, &["osd", "pool", "ls", "detail"])
        .await
        .expect("pool ls");
    let pool = |name: &str| {
        pools
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["pool_name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("pool {name} in {pools}"))
    };
    assert_eq!(
        (
            pool("nvme-pool")["size"].as_u64(),
            pool("nvme-pool")["min_size"].as_u64()
        ),
        (Some(2), Some(1))
    );
    assert_eq!(
        (
            pool("hdd-pool")["size"].as_u64(),
            pool("hdd-pool")["min_size"].as_u64()
        ),
        (Some(3), Some(2))
    );
    // Each OSD sits under its Kubernetes node, with the spec's device class.
    let tree = ceph_json(&client, &["osd", "tree"])
        .await
        .expect("osd tree");
    let nodes = tree["nodes"].as_array().unwrap();
    for host in ["dirqual1", "dirqual2", "dirqual3"] {
        let h = nodes
            .iter()
            .find(|n| n["name"] == host)
            .unwrap_or_else(|| panic!("{host} in {tree}"));
        assert_eq!(h["children"].as_array().map(Vec::len), Some(2), "{h}");
    }
    let class = |id: u64| {
        nodes
            .iter()
            .find(|n| n["id"] == id)
            .and_then(|n| n["device_class"].as_str())
            .map(String::from)
    };
    assert_eq!(class(0).as_deref(), Some("nvme"));
    assert_eq!(class(1).as_deref(), Some("hdd"));

    // CephCluster status.ceph follows the real `ceph status`.
    let cc = until("CephCluster HEALTH_OK", Duration::from_secs(10), || async {
        let c = twin
            .ctx()
            .client
            .get("ceph.rook.io", "cephclusters", Some(NS), "rook-ceph")?;
        (c.pointer("/status/ceph/health") == Some(&json!("HEALTH_OK"))).then_some(c)
    })
    .await;
    assert_eq!(cc.pointer("/status/ceph/fsid"), healthy.get("fsid"));
    assert!(
        cc.pointer("/status/version/version")
            .and_then(Value::as_str)
            .is_some_and(|v| v.starts_with("16.")),
        "{cc}"
    );

    // The mgr metrics service proxies the real exporter.
    let metrics = client
        .request_text(
            http::Request::get(format!(
                "/api/v1/namespaces/{NS}/services/rook-ceph-mgr:http-metrics/proxy/metrics"
            ))
            .body(Vec::new())
            .unwrap(),
        )
        .await
        .expect("metrics through the service proxy");
    assert!(
        metrics.contains("ceph_health_status 0.0"),
        "{}",
        &metrics[..metrics.len().min(500)]
    );
    assert!(metrics.contains("ceph_osd_up{ceph_daemon=\"osd.5\"} 1.0"));

    // Real stderr and exit codes come back through exec.
    let bad = exec(
        &client,
        &["ceph", "osd", "pool", "get", "no-such-pool", "size"],
    )
    .await
    .expect("exec");
    assert_ne!(bad.code, 0);
    assert!(bad.stderr.contains("no-such-pool"), "{}", bad.stderr);
    let rados = exec(&client, &["rados", "lspools"]).await.expect("exec");
    assert_eq!(rados.code, 0);
    assert!(
        rados.stdout.lines().any(|l| l == "hdd-pool"),
        "{}",
        rados.stdout
    );

    let mut all_pids: Vec<(String, u32)> = twin.ctx().ceph_backend.pids();
    assert_eq!(all_pids.len(), 8, "mon, mgr and 6 OSDs: {all_pids:?}");
    for (name, pid) in &all_pids {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        assert!(
            comm.trim().starts_with(&format!("ceph-{}", &name[..3])),
            "{name} pid {pid} is {comm:?}"
        );
    }

    // 1. Scale an OSD Deployment to 0: the process stops (SIGTERM), Ceph warns
    //    OSD_DOWN and degrades; back to 1: HEALTH_OK and every PG active+clean.
    let osd1 = backend_pid(&twin, "osd.1").unwrap();
    let real = osd_drill(
        &client,
        1,
        Duration::from_secs(12),
        Duration::from_secs(240),
    )
    .await;
    assert!(!pid_alive(osd1), "osd.1's old process {osd1} is gone");
    assert!(
        real.warn.is_some() && real.osd_down.is_some() && real.degraded.is_some(),
        "{real:?}"
    );
    assert!(real.clean.is_some(), "recovered: {real:?}");
    let osd1_new = backend_pid(&twin, "osd.1").expect("osd.1 runs again");
    assert_ne!(osd1_new, osd1);
    all_pids.push(("osd.1".into(), osd1_new));

    // 2. Delete an OSD pod: SIGKILL, the Deployment's new pod starts a new process;
    //    the monitor saw osd.2 go down (a new `up_from` epoch).
    let dump = ceph_json(&client, &["osd", "dump"])
        .await
        .expect("osd dump");
    let up_from = |d: &Value| {
        d["osds"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["osd"] == 2)
            .and_then(|o| o["up_from"].as_u64())
    };
    let up_from_before = up_from(&dump).unwrap();
    let osd2 = backend_pid(&twin, "osd.2").unwrap();
    let pod = osd_pod(&client, 2).await.expect("osd.2 pod");
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let t_del = Instant::now();
    pods.delete(&pod, &DeleteParams::default().grace_period(0))
        .await
        .expect("delete");
    let osd2_new = until("osd.2 restarted", Duration::from_secs(60), || async {
        backend_pid(&twin, "osd.2").filter(|p| *p != osd2)
    })
    .await;
    assert!(!pid_alive(osd2), "SIGKILLed");
    all_pids.push(("osd.2".into(), osd2_new));
    until(
        "osd.2 back up under a new epoch",
        Duration::from_secs(120),
        || async {
            let d = ceph_json(&client, &["osd", "dump"]).await?;
            (up_from(&d)? > up_from_before).then_some(())
        },
    )
    .await;
    until(
        "recovered after pod delete",
        Duration::from_secs(180),
        || async {
            let s = ceph_json(&client, &["status"]).await?;
            recovered(&s).then_some(())
        },
    )
    .await;
    let delete_recovered = t_del.elapsed();

    // 3. Power a node off: its two OSDs go silent (frozen); Ceph marks them down only
    //    after the heartbeat grace. Power on: they restart and the cluster recovers.
    let t_off = Instant::now();
    let (osd4, osd5) = (
        backend_pid(&twin, "osd.4").unwrap(),
        backend_pid(&twin, "osd.5").unwrap(),
    );
    power(&client, "dirqual3", "off").await;
    let down = until(
        "dirqual3's OSDs marked down",
        Duration::from_secs(90),
        || async {
            let s = ceph_json(&client, &["status"]).await?;
            (num_up(&s) == 4).then_some(t_off.elapsed())
        },
    )
    .await;
    power(&client, "dirqual3", "on").await;
    let t_on = Instant::now();
    until(
        "dirqual3's OSDs restarted",
        Duration::from_secs(120),
        || async {
            let a = backend_pid(&twin, "osd.4").filter(|p| *p != osd4)?;
            let b = backend_pid(&twin, "osd.5").filter(|p| *p != osd5)?;
            Some((a, b))
        },
    )
    .await;
    assert!(!pid_alive(osd4) && !pid_alive(osd5));
    until(
        "recovered after power on",
        Duration::from_secs(240),
        || async {
            let s = ceph_json(&client, &["status"]).await?;
            recovered(&s).then_some(())
        },
    )
    .await;
    let power_recovered = t_on.elapsed();
    all_pids.extend(twin.ctx().ceph_backend.pids());

    // Teardown by PID: nothing the backend started survives, the scratch folder goes.
    let timeline = twin.ctx().ceph_backend.timeline();
    let t_down = Instant::now();
    twin.shutdown().await;
    let teardown = t_down.elapsed();
    for (name, pid) in &all_pids {
        assert!(
            !pid_alive(*pid),
            "{name} pid {pid} still running after shutdown"
        );
    }

    // Calibration: the same drill on the simulated model.
    let mut sims = Vec::new();
    for timing in [Timing::fast(), Timing::realistic()] {
        let name = timing.name;
        let (twin, client) = start(CephBackendKind::Simulated, timing).await;
        until(
            "simulated cluster healthy",
            Duration::from_secs(180),
            || async {
                let s = ceph_json(&client, &["status"]).await?;
                recovered(&s).then_some(())
            },
        )
        .await;
        let d = osd_drill(
            &client,
            1,
            Duration::from_secs(12),
            Duration::from_secs(600),
        )
        .await;
        twin.shutdown().await;
        sims.push((name, d));
    }

    println!("\nreal Ceph under the twin (ceph 16.2, 1 mon, 1 mgr, 6 BlueStore OSDs on files):");
    println!("  monitor answering        {:.1} s", mon_up.as_secs_f64());
    println!(
        "  bootstrap to HEALTH_OK   {:.1} s (all PGs active+clean, data written)",
        bootstrap.as_secs_f64()
    );
    for (t, what) in &timeline {
        println!("    {:6.1} s  {what}", t.as_secs_f64());
    }
    println!(
        "  pod delete -> recovered  {:.1} s",
        delete_recovered.as_secs_f64()
    );
    println!("  power off -> 2 OSDs down {:.1} s", down.as_secs_f64());
    println!(
        "  power on -> recovered    {:.1} s",
        power_recovered.as_secs_f64()
    );
    println!("  teardown                 {:.2} s", teardown.as_secs_f64());
    println!("\nOSD drill: rook-ceph-osd-1 scaled to 0 for >= 12 s, then back to 1");
    println!(
        "{:<22} {:>12} {:>12} {:>12} {:>12}",
        "", "real", "sim fast", "sim realistic", ""
    );
    type Figure = fn(&Drill) -> Option<f64>;
    let rows: [(&str, Figure); 5] = [
        ("HEALTH_WARN after", |d| d.warn),
        ("OSD down after", |d| d.osd_down),
        ("PG_DEGRADED after", |d| d.degraded),
        ("back: HEALTH_OK after", |d| d.health_ok),
        ("back: active+clean", |d| d.clean),
    ];
    for (label, f) in rows {
        println!(
            "{label:<22} {:>12} {:>12} {:>12}",
            fmt(f(&real)),
            fmt(f(&sims[0].1)),
            fmt(f(&sims[1].1))
        );
    }
    println!("PG state families (in order):");
    println!("  real:          {}", real.sequence.join("  ->  "));
    for (name, d) in &sims {
        println!("  sim {name:<10} {}", d.sequence.join("  ->  "));
    }
    for (name, d) in &sims {
        assert!(
            d.warn.is_some() && d.clean.is_some(),
            "simulated {name}: {d:?}"
        );
    }
}
