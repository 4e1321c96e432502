//! The simulated PostgreSQL in a running twin: `psql` executed in a `postgres:16.4`
//! pod, data on the pod's PersistentVolume (surviving the pod, gone with the
//! volume), an in-memory fallback without a bound claim, TCP connections through a
//! Service, the server's start and shutdown logs, and the data plane's reads.

use std::time::Duration;

use serde_json::{json, Value};
use stormdrill_twin::ctx::Ctx;
use stormdrill_twin::sim::ExecOutput;
use stormdrill_twin::stack::postgres;
use stormdrill_twin::{Twin, TwinOptions};

const NS: &str = "default";
const WAIT: Duration = Duration::from_secs(20);

async fn twin() -> Twin {
    let twin = Twin::start(TwinOptions::default())
        .await
        .expect("twin starts");
    postgres::install(twin.ctx());
    twin
}

/// A static PV and a claim pre-bound to it (the PV controller binds them).
async fn volume(ctx: &Ctx, pv: &str, pvc: &str) {
    ctx.client
        .create(json!({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": pv},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
                     "persistentVolumeReclaimPolicy": "Retain", "hostPath": {"path": format!("/mnt/{pv}")}}
        }))
        .expect("PV created");
    ctx.client
        .create(json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": pvc, "namespace": NS},
            "spec": {"storageClassName": "manual", "volumeName": pv, "accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}}
        }))
        .expect("PVC created");
    wait_for(|| {
        ctx.client
            .get("", "persistentvolumeclaims", Some(NS), pvc)
            .is_some_and(|c| c["status"]["phase"] == "Bound")
    })
    .await;
}

async fn wait_for(mut ok: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met in time"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn create_pod(ctx: &Ctx, name: &str, claim: &str) -> Value {
    ctx.client
        .create(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "labels": {"app": "pg"}},
            "spec": {
                "nodeName": "dirqual1",
                "containers": [{
                    "name": "postgresql", "image": "postgres:16.4",
                    "env": [{"name": "POSTGRES_USER", "value": "openalex"}, {"name": "POSTGRES_PASSWORD", "value": "s3cret"},
                            {"name": "POSTGRES_DB", "value": "openalex"}],
                    "ports": [{"name": "postgres", "containerPort": 5432}],
                    "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}]
                }],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]
            }
        }))
        .expect("pod created")
}

async fn delete_pod(ctx: &Ctx, name: &str) {
    ctx.client
        .delete("", "pods", Some(NS), name, Some(0))
        .expect("pod deleted");
    wait_for(|| ctx.client.get("", "pods", Some(NS), name).is_none()).await;
}

/// Runs a command in the pod's postgresql container, as `kubectl exec` does.
fn exec(ctx: &Ctx, pod: &str, argv: &[&str], stdin: Option<&str>) -> ExecOutput {
    let p = ctx
        .client
        .get("", "pods", Some(NS), pod)
        .expect("pod exists");
    let mut req = stormdrill_twin::exec::exec_request(
        ctx,
        &p,
        "postgresql",
        argv.iter().map(|s| s.to_string()).collect(),
    );
    req.stdin = stdin.map(|s| s.as_bytes().to_vec());
    ctx.sim.exec(ctx, &req)
}

fn out(o: &ExecOutput) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &ExecOutput) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn logs(ctx: &Ctx, pod: &str) -> String {
    ctx.sim
        .logs(NS, pod, "postgresql")
        .into_iter()
        .map(|(_, l)| l + "\n")
        .collect()
}

const PSQL: &[&str] = &[
    "psql",
    "-U",
    "openalex",
    "-d",
    "openalex",
    "-v",
    "ON_ERROR_STOP=1",
    "-qAt",
    "-c",
];

fn psql(ctx: &Ctx, pod: &str, sql: &str) -> ExecOutput {
    let mut argv = PSQL.to_vec();
    argv.push(sql);
    exec(ctx, pod, &argv, None)
}

#[tokio::test]
async fn data_lives_on_the_pods_volume() {
    let twin = twin().await;
    let ctx = twin.ctx();
    volume(ctx, "pv-pg", "data-pg-0").await;
    create_pod(ctx, "pg-0", "data-pg-0");

    // First start on an empty volume: initdb and the OpenAlex sample.
    let r = psql(
        ctx,
        "pg-0",
        "select count(*) from works; select count(*) from authors",
    );
    assert_eq!(
        (out(&r), err(&r), r.exit_code),
        ("50\n30\n".into(), String::new(), 0)
    );
    assert!(logs(ctx, "pg-0").contains("PostgreSQL init process complete; ready for start up."));
    assert!(ctx
        .voldata
        .list("pv-pg")
        .contains(&"base/openalex/works.json".to_string()));

    // RPO markers, as the harness writes them.
    let r = psql(ctx, "pg-0", "CREATE TABLE IF NOT EXISTS rpo_markers (id bigserial PRIMARY KEY, ts timestamptz NOT NULL DEFAULT now(), note text)");
    assert_eq!(r.exit_code, 0, "{}", err(&r));
    let r = exec(ctx, "pg-0", &["sh", "-c", "for_each=1; psql -U openalex -qAt -c \"INSERT INTO rpo_markers (ts, note) VALUES ('2024-05-01 12:00:00+00', 'a'), ('2024-05-01 12:00:01.5+00', 'b') RETURNING id\""], None);
    assert_eq!((out(&r), r.exit_code), ("1\n2\n".into(), 0), "{}", err(&r));
    let r = psql(ctx, "pg-0", "SELECT max(ts) FROM rpo_markers");
    assert_eq!(out(&r), "2024-05-01 12:00:01.5+00\n");

    // The data plane reads the same tables.
    let pod = ctx.client.get("", "pods", Some(NS), "pg-0").unwrap();
    let w = postgres::select_json(
        ctx,
        &pod,
        "works",
        Some("https://openalex.org/W2741809807"),
        10,
    )
    .unwrap();
    assert_eq!(w.len(), 1);
    assert_eq!(w[0]["id"], "https://openalex.org/W2741809807");
    assert!(w[0]["authorships"]
        .as_array()
        .is_some_and(|a| !a.is_empty()));
    let a = postgres::select_json(ctx, &pod, "authors", Some("a5023888391"), 10).unwrap();
    assert_eq!(a[0]["id"], "https://openalex.org/A5023888391");
    assert_eq!(
        postgres::select_json(ctx, &pod, "works", None, 5)
            .unwrap()
            .len(),
        5
    );
    let m = postgres::select_json(ctx, &pod, "rpo_markers", None, 10).unwrap();
    assert_eq!(
        m[1],
        json!({"id": 2, "ts": "2024-05-01 12:00:01.5+00", "note": "b"})
    );
    let e = postgres::select_json(ctx, &pod, "nope", None, 10).unwrap_err();
    assert_eq!(e.to_string(), "ERROR:  relation \"nope\" does not exist");

    // A new pod object on the same claim finds the data (crash recovery: the old
    // server never shut down cleanly).
    delete_pod(ctx, "pg-0").await;
    create_pod(ctx, "pg-0", "data-pg-0");
    let r = psql(ctx, "pg-0", "SELECT count(*) FROM rpo_markers");
    assert_eq!(out(&r), "2\n", "{}", err(&r));
    // (The log may still hold the deleted pod's lines: a grace-0 delete leaves them.)
    let l = logs(ctx, "pg-0");
    assert!(
        l.contains(
            "PostgreSQL Database directory appears to contain a database; Skipping initialization"
        ),
        "{l}"
    );
    assert!(
        l.contains("database system was interrupted; last known up at"),
        "{l}"
    );
    assert!(l.matches("init process complete").count() <= 1, "{l}");

    // Connection errors as psql prints them.
    let r = exec(
        ctx,
        "pg-0",
        &["psql", "-U", "openalex", "-d", "nodb", "-c", "select 1"],
        None,
    );
    assert_eq!(
        (err(&r), r.exit_code),
        ("psql: error: connection to server on socket \"/var/run/postgresql/.s.PGSQL.5432\" failed: FATAL:  database \"nodb\" does not exist\n".into(), 2)
    );
    let r = exec(ctx, "pg-0", &["psql", "-c", "select 1"], None);
    assert_eq!(err(&r), "psql: error: connection to server on socket \"/var/run/postgresql/.s.PGSQL.5432\" failed: FATAL:  role \"root\" does not exist\n");
    let r = psql(ctx, "pg-0", "SELECT * FROM nope");
    assert_eq!((err(&r), r.exit_code), ("ERROR:  relation \"nope\" does not exist\nLINE 1: SELECT * FROM nope\n                      ^\n".into(), 1));
    assert!(
        logs(ctx, "pg-0").contains("ERROR:  relation \"nope\" does not exist at character 15\n")
    );

    // The volume is deleted (and a PV of the same name created again): the data is gone.
    delete_pod(ctx, "pg-0").await;
    ctx.client
        .delete("", "persistentvolumeclaims", Some(NS), "data-pg-0", Some(0))
        .unwrap();
    ctx.client
        .delete("", "persistentvolumes", None, "pv-pg", Some(0))
        .unwrap();
    wait_for(|| {
        ctx.client
            .get("", "persistentvolumes", None, "pv-pg")
            .is_none()
    })
    .await;
    volume(ctx, "pv-pg", "data-pg-0").await;
    create_pod(ctx, "pg-0", "data-pg-0");
    let r = psql(ctx, "pg-0", "SELECT count(*) FROM rpo_markers");
    assert_eq!((err(&r), r.exit_code), ("ERROR:  relation \"rpo_markers\" does not exist\nLINE 1: SELECT count(*) FROM rpo_markers\n                             ^\n".into(), 1));
    assert_eq!(
        out(&psql(ctx, "pg-0", "SELECT count(*) FROM works")),
        "50\n"
    );

    // delete_volume (reclaim policy Delete) drops the data too.
    psql(ctx, "pg-0", "CREATE TABLE t (a int)");
    assert!(ctx.voldata.delete_volume("pv-pg"));
    delete_pod(ctx, "pg-0").await;
    create_pod(ctx, "pg-0", "data-pg-0");
    assert_eq!(psql(ctx, "pg-0", "SELECT * FROM t").exit_code, 1);
}

#[tokio::test]
async fn without_a_bound_claim_the_data_is_in_memory() {
    let twin = twin().await;
    let ctx = twin.ctx();
    ctx.client
        .create(json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "pending", "namespace": NS},
            "spec": {"storageClassName": "no-such-class", "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}
        }))
        .unwrap();
    create_pod(ctx, "mem-0", "pending");
    let r = psql(
        ctx,
        "mem-0",
        "CREATE TABLE m (id int); INSERT INTO m VALUES (1); SELECT count(*) FROM m",
    );
    assert_eq!(out(&r), "1\n", "{}", err(&r));
    assert_eq!(
        out(&psql(ctx, "mem-0", "SELECT count(*) FROM works")),
        "50\n"
    );
    let l = logs(ctx, "mem-0");
    assert!(l.contains("WARNING:  (stormdrill twin) volume \"data\" has no bound PersistentVolumeClaim: the database lives in memory and is lost with the pod"), "{l}");
    // The pod goes: so does its data.
    delete_pod(ctx, "mem-0").await;
    create_pod(ctx, "mem-0", "pending");
    let r = psql(ctx, "mem-0", "SELECT count(*) FROM m");
    assert_eq!(r.exit_code, 1);
    assert!(err(&r).starts_with("ERROR:  relation \"m\" does not exist"));
    assert_eq!(
        ctx.voldata
            .volumes()
            .iter()
            .filter(|v| v.starts_with("ephemeral:"))
            .count(),
        1
    );
}

#[tokio::test]
async fn the_server_starts_with_the_container_and_shuts_down_with_the_pod() {
    let twin = twin().await;
    let ctx = twin.ctx();
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(postgres::run(ctx.clone(), stop));
    volume(ctx, "pv-run", "data-run-0").await;
    create_pod(ctx, "run-0", "data-run-0");
    // No exec: the container running is enough.
    wait_for(|| logs(ctx, "run-0").contains("database system is ready to accept connections"))
        .await;
    assert!(logs(ctx, "run-0").contains("PostgreSQL init process complete"));
    assert!(ctx
        .voldata
        .list("pv-run")
        .contains(&"postmaster.pid".to_string()));

    // A graceful delete on a live node: a clean shutdown.
    ctx.client
        .delete("", "pods", Some(NS), "run-0", None)
        .unwrap();
    wait_for(|| ctx.client.get("", "pods", Some(NS), "run-0").is_none()).await;
    assert!(!ctx
        .voldata
        .list("pv-run")
        .contains(&"postmaster.pid".to_string()));
    create_pod(ctx, "run-0", "data-run-0");
    wait_for(|| logs(ctx, "run-0").contains("database system is ready to accept connections"))
        .await;
    let l = logs(ctx, "run-0");
    assert!(l.contains("LOG:  database system was shut down at"), "{l}");
    assert!(!l.contains("interrupted"), "{l}");
}

#[tokio::test]
async fn psql_over_tcp_through_a_service() {
    let twin = twin().await;
    let ctx = twin.ctx();
    ctx.client
        .create(json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "pg", "namespace": NS},
            "spec": {"selector": {"app": "pg"}, "ports": [{"name": "postgres", "port": 5432, "targetPort": "postgres"}]}
        }))
        .unwrap();
    volume(ctx, "pv-tcp", "data-tcp-0").await;
    create_pod(ctx, "tcp-0", "data-tcp-0");
    wait_for(|| {
        ctx.client
            .get("", "pods", Some(NS), "tcp-0")
            .is_some_and(|p| {
                p["status"]["conditions"].as_array().is_some_and(|c| {
                    c.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                })
            })
    })
    .await;
    let host = "pg.default.svc.cluster.local";
    let r = exec(
        ctx,
        "tcp-0",
        &["psql", "-h", host, "-U", "openalex", "-c", "select 1"],
        None,
    );
    let ip = ctx.client.get("", "services", Some(NS), "pg").unwrap()["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        (err(&r), r.exit_code),
        (format!("psql: error: connection to server at \"{host}\" ({ip}), port 5432 failed: fe_sendauth: no password supplied\n"), 2)
    );
    let r = exec(
        ctx,
        "tcp-0",
        &[
            "sh",
            "-c",
            &format!("PGPASSWORD=wrong psql -h {host} -U openalex -c 'select 1'"),
        ],
        None,
    );
    assert_eq!(err(&r), format!("psql: error: connection to server at \"{host}\" ({ip}), port 5432 failed: FATAL:  password authentication failed for user \"openalex\"\n"));
    let r = exec(
        ctx,
        "tcp-0",
        &[
            "sh",
            "-c",
            "PGPASSWORD=s3cret psql -h pg -U openalex -tAc 'select current_database()'",
        ],
        None,
    );
    assert_eq!(
        (out(&r), r.exit_code),
        ("openalex\n".into(), 0),
        "{}",
        err(&r)
    );
    let r = exec(
        ctx,
        "tcp-0",
        &[
            "psql",
            "postgresql://openalex:s3cret@pg:5432/openalex",
            "-tAc",
            "select 2",
        ],
        None,
    );
    assert_eq!(out(&r), "2\n", "{}", err(&r));
    // localhost is trusted, as in the image's pg_hba.conf.
    let r = exec(
        ctx,
        "tcp-0",
        &[
            "psql",
            "-h",
            "localhost",
            "-U",
            "openalex",
            "-tAc",
            "select 3",
        ],
        None,
    );
    assert_eq!(out(&r), "3\n", "{}", err(&r));
    let r = exec(
        ctx,
        "tcp-0",
        &["psql", "-h", "nowhere", "-U", "openalex", "-c", "select 1"],
        None,
    );
    assert_eq!(err(&r), "psql: error: could not translate host name \"nowhere\" to address: Name or service not known\n");
    let r = exec(
        ctx,
        "tcp-0",
        &["psql", "-p", "5433", "-U", "openalex", "-c", "select 1"],
        None,
    );
    assert_eq!(
        err(&r),
        "psql: error: connection to server on socket \"/var/run/postgresql/.s.PGSQL.5433\" failed: No such file or directory\n\tIs the server running locally and accepting connections on that socket?\n"
    );
    let r = exec(ctx, "tcp-0", &["pg_isready"], None);
    assert_eq!(
        (out(&r), r.exit_code),
        (
            "/var/run/postgresql:5432 - accepting connections\n".into(),
            0
        )
    );
    let r = exec(ctx, "tcp-0", &["psql", "--version"], None);
    assert_eq!(
        out(&r),
        "psql (PostgreSQL) 16.4 (Debian 16.4-1.pgdg120+2)\n"
    );
    // A script on stdin.
    let r = exec(
        ctx,
        "tcp-0",
        &["psql", "-U", "openalex", "-v", "ON_ERROR_STOP=1"],
        Some("CREATE TABLE s (a text);\nINSERT INTO s VALUES ('x');\nSELECT a FROM s;\n"),
    );
    assert_eq!(
        (out(&r), r.exit_code),
        (
            "CREATE TABLE\nINSERT 0 1\n a \n---\n x\n(1 row)\n\n".into(),
            0
        )
    );
}
