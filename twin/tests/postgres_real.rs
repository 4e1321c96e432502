//! `--postgres real`: the stack's PostgreSQL manifests (fixtures/stack/50-databases.yaml)
//! on a twin whose process runtime runs the installed server behind `postgres-0`'s
//! image. A real postgres process (its PID alive) initialised on the PV's directory
//! with the stack's user, database and the OpenAlex sample; the real psql through
//! kube exec; the data surviving a pod deletion (the StatefulSet's replacement on the
//! same directory) and a SIGKILL (real crash recovery); a node's power-off freezing it
//! (a query gets no answer) and power-on bringing it back; nothing left after the
//! twin's shutdown. Skipped with a message without PostgreSQL; required under CI.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams};
use kube::{Client, Config};
use serde_json::{json, Value};
use stormdrill_twin::ctx::{obj, Ctx};
use stormdrill_twin::procs::postgres::Postgres;
use stormdrill_twin::stack::postgres::PostgresBackend;
use stormdrill_twin::{Twin, TwinOptions};
use tokio::io::AsyncReadExt;

const NS: &str = "openalex";
const POD: &str = "postgresql-0";
const CONTAINER: &str = "postgresql";
/// initdb, the sample's load and the first start take a few seconds; 2 cores shared.
const START: Duration = Duration::from_secs(120);
const EXEC_WAIT: Duration = Duration::from_secs(30);

async fn client(twin: &Twin) -> Client {
    let kc = kube::config::Kubeconfig::from_yaml(&twin.kubeconfig_yaml()).expect("kubeconfig");
    let config = Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("client config");
    Client::try_from(config).expect("client")
}

/// The stack's Secret, StatefulSet and Service for PostgreSQL, with the claim the
/// StatefulSet will use created up front on a static PV (no Ceph in this test).
fn apply_database(ctx: &Ctx) {
    let _ = ctx.client.create(json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}
    }));
    ctx.client
        .create(json!({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": "pg-real"},
            "spec": {"capacity": {"storage": "20Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
                     "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": "/mnt/pg-real"}}
        }))
        .expect("PV created");
    ctx.client
        .create(json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data-postgresql-0", "namespace": NS},
            "spec": {"storageClassName": "manual", "volumeName": "pg-real", "accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "20Gi"}}}
        }))
        .expect("PVC created");
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/stack/50-databases.yaml"
    ))
    .expect("the stack's database manifests");
    let mut applied = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let o: Value = serde::Deserialize::deserialize(doc).expect("YAML");
        let kind = o["kind"].as_str().unwrap_or("").to_string();
        let name = o["metadata"]["name"].as_str().unwrap_or("").to_string();
        let wanted = matches!(
            (kind.as_str(), name.as_str()),
            ("Secret", "postgresql-auth")
                | ("StatefulSet", "postgresql")
                | ("Service", "postgresql")
        );
        if wanted {
            ctx.client.create(o).expect("stack object created");
            applied.push(kind);
        }
    }
    assert_eq!(
        applied.len(),
        3,
        "the fixture still holds them: {applied:?}"
    );
}

fn pod(ctx: &Ctx) -> Option<Value> {
    ctx.client.get("", "pods", Some(NS), POD)
}

/// Waits for a Ready `postgresql-0` other than `not_uid`; returns it.
async fn ready_pod(ctx: &Ctx, not_uid: Option<&str>, what: &str) -> Value {
    let deadline = Instant::now() + START;
    loop {
        if let Some(p) = pod(ctx) {
            if obj::is_pod_ready(&p) && !obj::is_terminating(&p) && Some(obj::uid(&p)) != not_uid {
                return p;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {POD} not Ready within {START:?}; its log:\n{}",
            logs(ctx)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn logs(ctx: &Ctx) -> String {
    ctx.sim
        .logs(NS, POD, CONTAINER)
        .into_iter()
        .map(|(_, l)| l + "\n")
        .collect()
}

/// `psql -U openalex -d openalex -tA -c SQL` in the pod through the API, as the
/// harness's DR markers run it: (stdout, stderr, success).
async fn psql(client: &Client, sql: &str) -> (String, String, bool) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let ap = AttachParams::default()
        .container(CONTAINER)
        .stdout(true)
        .stderr(true);
    let cmd = [
        "psql",
        "-U",
        "openalex",
        "-d",
        "openalex",
        "-tA",
        "-v",
        "ON_ERROR_STOP=1",
        "-c",
        sql,
    ];
    let mut p = tokio::time::timeout(EXEC_WAIT, pods.exec(POD, cmd, &ap))
        .await
        .expect("exec connects in time")
        .expect("exec starts");
    let (mut so, mut se) = (Vec::new(), Vec::new());
    let mut out = p.stdout().expect("stdout");
    let mut err = p.stderr().expect("stderr");
    let status = p.take_status().expect("status");
    tokio::time::timeout(EXEC_WAIT, async {
        let _ = tokio::join!(out.read_to_end(&mut so), err.read_to_end(&mut se));
    })
    .await
    .expect("psql answers in time");
    let status = tokio::time::timeout(EXEC_WAIT, status)
        .await
        .expect("status in time")
        .expect("a status");
    (
        String::from_utf8_lossy(&so).trim().to_string(),
        String::from_utf8_lossy(&se).into_owned(),
        status.status.as_deref() == Some("Success"),
    )
}

/// Whether the server answers a protocol message (an SSLRequest; it replies one
/// byte) on its own port within `wait`.
fn answers(addr: std::net::SocketAddr, wait: Duration) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, wait) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(wait));
    if s.write_all(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]).is_err() {
        return false;
    }
    let mut b = [0u8; 1];
    s.read_exact(&mut b).is_ok()
}

/// The process state letter in /proc/PID/stat (`T`: stopped), or None when gone.
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.trim().chars().next()
}

/// (ppid, state) from /proc/PID/stat; None when gone.
fn stat(pid: u32) -> Option<(u32, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let f: Vec<&str> = text.rsplit_once(')')?.1.split_whitespace().collect();
    Some((f.get(1)?.parse().ok()?, f.first()?.chars().next()?))
}

/// The live (not zombie) processes among `roots` and their descendants.
fn tree(roots: &[u32]) -> Vec<u32> {
    let all: Vec<(u32, u32, char)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| stat(pid).map(|(ppid, st)| (pid, ppid, st)))
        .collect();
    let mut out: Vec<u32> = roots
        .iter()
        .copied()
        .filter(|r| all.iter().any(|(p, _, st)| p == r && *st != 'Z'))
        .collect();
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(
            all.iter()
                .filter(|(_, pp, st)| *pp == parent && *st != 'Z')
                .map(|(p, _, _)| *p),
        );
        i += 1;
    }
    out
}

/// VmRSS of a process in KiB (0 when gone).
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn pid(ctx: &Ctx) -> u32 {
    ctx.procs
        .pid(NS, POD, CONTAINER)
        .expect("a postgres process runs for the pod")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_stacks_postgresql_runs_for_real() {
    if Postgres::for_test().is_none() {
        return;
    }
    let twin = Twin::start(TwinOptions {
        postgres: PostgresBackend::Real,
        ..TwinOptions::default()
    })
    .await
    .expect("twin starts with --postgres real");
    let ctx = twin.ctx().clone();
    let client = client(&twin).await;
    let t0 = Instant::now();
    apply_database(&ctx);

    // A real server initialised on the PV's directory, PGDATA a subdirectory of it.
    let first = ready_pod(&ctx, None, "first start").await;
    let started = t0.elapsed();
    let pid1 = pid(&ctx);
    assert_eq!(
        std::fs::read_to_string(format!("/proc/{pid1}/comm"))
            .ok()
            .as_deref(),
        Some("postgres\n")
    );
    let volumes = ctx.procs.scratch().join("volumes");
    let vol = std::fs::read_dir(&volumes)
        .expect("a volume directory")
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("pg-real-"))
        .expect("the PV's directory")
        .path();
    assert!(
        vol.join("pgdata/PG_VERSION").is_file(),
        "PGDATA is the volume's pgdata/"
    );
    assert!(
        vol.join("lost+found").is_dir(),
        "the volume root keeps lost+found"
    );
    println!(
        "postgres Ready {:.2} s after the manifests were applied (initdb + sample)",
        started.as_secs_f64()
    );

    // The real psql, the stack's user and database, the OpenAlex sample.
    let (v, e, ok) = psql(&client, "SELECT version()").await;
    assert!(ok && v.starts_with("PostgreSQL "), "version: {v} {e}");
    let (n, e, ok) = psql(&client, "SELECT count(*) FROM works").await;
    assert!(ok && n == "50", "the sample's 50 works: {n} {e}");
    let group = tree(&[pid1]);
    assert!(group.len() > 3, "a postmaster and its children: {group:?}");
    let rss_kib: u64 = group.iter().map(|p| rss_kib(*p)).sum();
    println!(
        "{v}: {} processes, {} MiB resident (shared pages counted in each)",
        group.len(),
        rss_kib / 1024
    );
    let (_, e, ok) = psql(
        &client,
        "CREATE TABLE markers (id int primary key, note text); INSERT INTO markers VALUES (1, 'before')",
    )
    .await;
    assert!(ok, "create and insert: {e}");
    // A real error, as the real psql prints it.
    let (_, e, ok) = psql(&client, "SELECT nope FROM markers").await;
    assert!(!ok && e.contains("column \"nope\" does not exist"), "{e}");

    // Deleted: stopped (SIGINT, fast shutdown), replaced on the same directory.
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    pods.delete(POD, &Default::default())
        .await
        .expect("pod deleted");
    let t = Instant::now();
    let second = ready_pod(&ctx, Some(obj::uid(&first)), "after deletion").await;
    assert_ne!(obj::uid(&second), obj::uid(&first));
    println!(
        "replacement Ready {:.2} s after the deletion",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(proc_state(pid1), None, "the first server is gone");
    let pid2 = pid(&ctx);
    assert_ne!(pid1, pid2);
    let (note, e, _) = psql(&client, "SELECT note FROM markers WHERE id = 1").await;
    assert_eq!(note, "before", "the row survived the pod: {e}");

    // Killed: the container crashes, restarts, and the server recovers its WAL.
    let (_, e, ok) = psql(&client, "INSERT INTO markers VALUES (2, 'unflushed')").await;
    assert!(ok, "{e}");
    // SAFETY: kill(2) of the server we just looked up, as an OOM kill would.
    unsafe {
        libc::kill(pid2 as libc::pid_t, libc::SIGKILL);
    }
    let deadline = Instant::now() + START;
    while ctx.procs.pid(NS, POD, CONTAINER).is_none_or(|p| p == pid2)
        || !pod(&ctx).is_some_and(|p| obj::is_pod_ready(&p))
    {
        assert!(
            Instant::now() < deadline,
            "no restart after the kill:\n{}",
            logs(&ctx)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let restarts = pod(&ctx).unwrap()["status"]["containerStatuses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == CONTAINER)
        .and_then(|c| c["restartCount"].as_i64());
    assert_eq!(restarts, Some(1), "the kill is a container restart");
    assert!(
        logs(&ctx).contains("automatic recovery in progress"),
        "real crash recovery:\n{}",
        logs(&ctx)
    );
    let (n, e, _) = psql(&client, "SELECT count(*) FROM markers").await;
    assert_eq!(n, "2", "committed rows survive the kill: {e}");

    // Power off: the server's processes are stopped and a client gets no answer.
    let pid3 = pid(&ctx);
    let addr = ctx
        .procs
        .addr(&pod(&ctx).unwrap(), 5432)
        .expect("the pod's port 5432 is the server's");
    assert!(
        answers(addr, Duration::from_secs(2)),
        "the running server answers"
    );
    let node = obj::str_at(&pod(&ctx).unwrap(), "/spec/nodeName")
        .unwrap()
        .to_string();
    ctx.power.set(&node, false);
    let deadline = Instant::now() + Duration::from_secs(10);
    while proc_state(pid3) != Some('T') {
        assert!(
            Instant::now() < deadline,
            "not frozen: {:?}",
            proc_state(pid3)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !answers(addr, Duration::from_secs(1)),
        "a frozen server answers nothing"
    );
    let frozen = tree(&[pid3]);
    assert!(frozen.len() > 3, "the server's children: {frozen:?}");
    assert!(
        frozen.iter().all(|p| proc_state(*p) == Some('T')),
        "every process of the server is frozen: {:?}",
        frozen
            .iter()
            .map(|p| (p, proc_state(*p)))
            .collect::<Vec<_>>()
    );
    // Power on: the node reboots, its containers restart, the data is there.
    ctx.power.set(&node, true);
    let deadline = Instant::now() + START;
    loop {
        let up = ctx.procs.pid(NS, POD, CONTAINER).is_some()
            && pod(&ctx).is_some_and(|p| obj::is_pod_ready(&p) && !obj::is_terminating(&p));
        if up {
            let (n, _, ok) = psql(&client, "SELECT count(*) FROM markers").await;
            if ok {
                assert_eq!(n, "2", "the rows are there after power-on");
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no server after power-on:\n{}",
            logs(&ctx)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_ne!(proc_state(pid3), Some('T'), "nothing stays frozen");

    // Shutdown: every server process is gone.
    let leaders: Vec<u32> = ctx.procs.pids().into_iter().map(|(_, p)| p).collect();
    let all = tree(&leaders);
    assert!(all.len() > leaders.len(), "servers with children: {all:?}");
    let scratch = ctx.procs.scratch().to_path_buf();
    drop(ctx);
    twin.shutdown().await;
    let left: Vec<u32> = all
        .into_iter()
        .filter(|p| proc_state(*p).is_some_and(|s| s != 'Z'))
        .collect();
    assert_eq!(
        left,
        Vec::<u32>::new(),
        "postgres processes outlived the twin"
    );
    assert!(!scratch.exists(), "the scratch folder is removed");
}
