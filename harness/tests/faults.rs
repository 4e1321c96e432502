//! Faults against the twin, through the Kubernetes API: each fault applies and its
//! revert restores the prior state; a killed harness is cleaned up by `stormdrill
//! recover`; Ctrl-C reverts and exits 3; `--dry-run` changes nothing; the guard refuses
//! a cluster that did not opt in; a drain blocked by a PDB is reported, not hung.
//!
//! One `stormdrill twin serve --with-stack` process (a separate process, so the harness
//! can be killed without killing the twin) serves the tests that share it; they take
//! [`SERIAL`] in turn, and each leaves the twin as it found it (that is what is tested).

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{mpsc, Arc, LazyLock},
    time::{Duration, Instant},
};

use k8s_openapi::api::{
    apps::v1::{Deployment, StatefulSet},
    core::v1::{ConfigMap, Node, Pod},
    networking::v1::NetworkPolicy,
};
use kube::{
    api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
    core::GroupVersionKind,
    discovery::ApiResource,
    Client, Config, ResourceExt,
};
use serde_json::{json, Value};
use stormdrill::{
    cli::RunArgs,
    fault::{
        ceph::{self, Toolbox},
        drain::NodeDrain,
        guard::Policy,
        journal::{Contents, RunHeader},
        network::Isolate,
        pod_kill::PodKill,
        power::PowerOff,
        resolve,
        scale::{ScaleToZero, Workload, WorkloadKind},
        Fault, FaultError, FaultKind, FaultRun, FaultRunOptions, ScenarioFaults,
    },
    measure::touched::Touched,
    target::{power::TwinPower, TargetKind},
    verdict::{ScenarioStatus, Verdict},
};

const WAIT: Duration = Duration::from_secs(60);

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    manifest().join("tests/fixtures/faults").join(name)
}

fn stack_dir() -> PathBuf {
    manifest().join("../fixtures/stack")
}

/// The shared twin: its kubeconfig; the process dies with this test binary.
struct Served {
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

static TWIN: LazyLock<Served> = LazyLock::new(|| {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let (tx, rx) = mpsc::channel();
    let kc = kubeconfig.clone();
    // A thread that lives as long as the process: PR_SET_PDEATHSIG fires when the
    // spawning *thread* ends, and test threads end with their test.
    std::thread::spawn(move || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_stormdrill"));
        cmd.args(["twin", "serve", "--with-stack", "--seed", "5", "--stack"])
            .arg(stack_dir())
            .arg("--kubeconfig-out")
            .arg(&kc)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::process::CommandExt as _;
            // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().expect("twin serve starts");
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut told = false;
        for line in out.lines().map_while(Result::ok) {
            if !told && line.starts_with("twin serving at ") {
                tx.send(()).unwrap();
                told = true;
            }
        }
        let _ = child.wait();
        loop {
            std::thread::park();
        }
    });
    rx.recv_timeout(Duration::from_secs(180))
        .expect("twin serve --with-stack came up");
    Served {
        kubeconfig,
        _dir: dir,
    }
});

/// The shared twin, one test at a time (a tokio mutex: async tests hold it across
/// awaits; it does not poison, so one failed test does not fail the others).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn shared_twin() -> (tokio::sync::MutexGuard<'static, ()>, &'static Path) {
    let guard = SERIAL.lock().await;
    // The first caller waits for the twin to come up: off the runtime's workers.
    let kubeconfig = tokio::task::spawn_blocking(|| TWIN.kubeconfig.as_path())
        .await
        .unwrap();
    (guard, kubeconfig)
}

fn shared_twin_blocking() -> (tokio::sync::MutexGuard<'static, ()>, &'static Path) {
    (SERIAL.blocking_lock(), &TWIN.kubeconfig)
}

async fn client_for(kubeconfig: &Path) -> Client {
    let kc = Kubeconfig::read_from(kubeconfig).unwrap();
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

fn server_of(kubeconfig: &Path) -> String {
    let kc = Kubeconfig::read_from(kubeconfig).unwrap();
    kc.clusters[0]
        .cluster
        .as_ref()
        .unwrap()
        .server
        .clone()
        .unwrap()
}

/// Creates (Some) or deletes (None) the opt-in ConfigMap.
async fn set_opt_in(client: &Client, data: Option<(&str, &str)>) {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
    let _ = api
        .delete("stormdrill-allow", &DeleteParams::default())
        .await;
    if let Some((namespaces, faults)) = data {
        let cm: ConfigMap = serde_json::from_value(json!({
            "metadata": {"name": "stormdrill-allow", "namespace": "kube-system"},
            "data": {"namespaces": namespaces, "faults": faults},
        }))
        .unwrap();
        api.create(&PostParams::default(), &cm).await.unwrap();
    }
}

/// What faults change, at the level their reverts restore.
#[derive(Clone, Debug, PartialEq)]
struct State {
    replicas: BTreeMap<String, i32>,
    nodes: BTreeMap<String, Value>,
    policies: Vec<String>,
    osd_in: BTreeMap<u32, bool>,
    noout: bool,
    power: Value,
    ready_pods: BTreeMap<String, usize>,
}

async fn state(client: &Client) -> State {
    let mut replicas = BTreeMap::new();
    for ns in ["openalex", "rook-ceph"] {
        let lp = ListParams::default();
        for d in Api::<Deployment>::namespaced(client.clone(), ns)
            .list(&lp)
            .await
            .unwrap()
        {
            let r = d.spec.replicas.unwrap_or(1);
            replicas.insert(format!("Deployment {ns}/{}", d.name_any()), r);
        }
        for s in Api::<StatefulSet>::namespaced(client.clone(), ns)
            .list(&lp)
            .await
            .unwrap()
        {
            let r = s.spec.replicas.unwrap_or(1);
            replicas.insert(format!("StatefulSet {ns}/{}", s.name_any()), r);
        }
    }
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|n| {
            let spec = json!({
                "unschedulable": n.spec.as_ref().and_then(|s| s.unschedulable).unwrap_or(false),
                "taints": n.spec.as_ref().and_then(|s| s.taints.clone()).unwrap_or_default(),
            });
            (n.name_any(), spec)
        })
        .collect();
    let mut policies: Vec<String> = Api::<NetworkPolicy>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|p| format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any()))
        .collect();
    policies.sort();
    // The toolbox may be on a node a fault just powered off: wait for another.
    let tree = Toolbox::json_patiently(client, &["osd", "tree"], WAIT)
        .await
        .unwrap();
    let osd_in = (0..6)
        .map(|id| (id, ceph::osd_is_in(&tree, id).unwrap()))
        .collect();
    let status = Toolbox::json_patiently(client, &["status"], WAIT)
        .await
        .unwrap();
    let power_req = http::Request::get("/twin/v1/nodes")
        .body(Vec::new())
        .unwrap();
    let power: Value =
        serde_json::from_str(&client.request_text(power_req).await.unwrap()).unwrap();
    let mut ready_pods = BTreeMap::new();
    for ns in ["openalex", "rook-ceph"] {
        for p in Api::<Pod>::namespaced(client.clone(), ns)
            .list(&ListParams::default())
            .await
            .unwrap()
        {
            let ready = p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            if ready && p.metadata.deletion_timestamp.is_none() {
                let owner = p
                    .labels()
                    .get("app")
                    .cloned()
                    .unwrap_or_else(|| p.name_any());
                *ready_pods.entry(format!("{ns}/{owner}")).or_insert(0) += 1;
            }
        }
    }
    State {
        replicas,
        nodes,
        policies,
        osd_in,
        noout: ceph::flag_is_set(&status, "noout"),
        power,
        ready_pods,
    }
}

/// Waits until the twin is back to `before` (Ready pods and taints follow the revert
/// with the controllers' delays); panics with the difference otherwise.
async fn assert_restored(client: &Client, before: &State, what: &str) {
    let start = Instant::now();
    loop {
        let now = state(client).await;
        if &now == before {
            return;
        }
        if start.elapsed() > WAIT {
            panic!("{what}: not restored within {WAIT:?}\nbefore: {before:#?}\nnow: {now:#?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Every object's resourceVersion that a fault could touch.
async fn resource_versions(client: &Client) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let lp = ListParams::default();
    for ns in ["openalex", "rook-ceph", "kube-system"] {
        macro_rules! collect {
            ($k:ty, $name:literal) => {
                for o in Api::<$k>::namespaced(client.clone(), ns)
                    .list(&lp)
                    .await
                    .unwrap()
                {
                    out.insert(
                        format!("{} {ns}/{}", $name, o.name_any()),
                        o.resource_version().unwrap_or_default(),
                    );
                }
            };
        }
        collect!(Deployment, "Deployment");
        collect!(StatefulSet, "StatefulSet");
        collect!(Pod, "Pod");
        collect!(NetworkPolicy, "NetworkPolicy");
    }
    for n in Api::<Node>::all(client.clone()).list(&lp).await.unwrap() {
        out.insert(
            format!("Node {}", n.name_any()),
            n.resource_version().unwrap_or_default(),
        );
    }
    out
}

fn fault_run(client: &Client, dir: &Path) -> FaultRun {
    FaultRun::new(FaultRunOptions {
        client: client.clone(),
        power: Arc::new(TwinPower::new(client.clone())),
        policy: Policy::Open,
        dry_run: false,
        seed: 3,
        run_dir: Some(dir.to_owned()),
        header: RunHeader {
            run_id: "lib".into(),
            target: "cluster".into(),
            server: "test".into(),
        },
    })
}

async fn node_of(client: &Client, ns: &str, pod: &str) -> String {
    let p = Api::<Pod>::namespaced(client.clone(), ns)
        .get(pod)
        .await
        .unwrap();
    p.spec.unwrap().node_name.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fault_applies_and_its_revert_restores_the_prior_state() {
    let (_serial, kubeconfig) = shared_twin().await;
    let client = client_for(kubeconfig).await;
    let dir = tempfile::tempdir().unwrap();
    let run = fault_run(&client, dir.path());
    let toolbox = Toolbox::find(&client).await.unwrap();
    let postgres_node = node_of(&client, "openalex", "postgresql-0").await;
    let drain_node = ["dirqual1", "dirqual2", "dirqual3"]
        .into_iter()
        .find(|n| *n != postgres_node)
        .unwrap()
        .to_owned();
    let fastapi_pods = resolve::live_pods(&client, "openalex", "app=fastapi")
        .await
        .unwrap();
    let faults: Vec<(Box<dyn Fault>, &str)> = vec![
        (
            Box::new(ScaleToZero {
                kind: FaultKind::WorkloadOutage,
                workload: Workload {
                    kind: WorkloadKind::StatefulSet,
                    namespace: "openalex".into(),
                    name: "postgresql".into(),
                },
            }),
            "StatefulSet openalex/postgresql",
        ),
        (
            Box::new(ScaleToZero {
                kind: FaultKind::OsdDown,
                workload: resolve::osd_deployment(&client, 1).await.unwrap(),
            }),
            "Deployment rook-ceph/rook-ceph-osd-1",
        ),
        (
            Box::new(ceph::OsdOut {
                id: 2,
                toolbox: toolbox.clone(),
            }),
            "osd.2",
        ),
        (
            Box::new(ceph::SetFlag {
                flag: "noout".into(),
                toolbox: toolbox.clone(),
            }),
            "noout",
        ),
        (
            Box::new(PowerOff {
                node: "dirqual3".into(),
            }),
            "dirqual3 power",
        ),
        (
            Box::new(NodeDrain {
                node: drain_node.clone(),
                timeout: Duration::from_secs(30),
            }),
            "drain",
        ),
        (
            Box::new(Isolate {
                namespace: "openalex".into(),
                labels: [("app".to_owned(), "postgresql".to_owned())].into(),
            }),
            "isolation",
        ),
        (
            Box::new(PodKill {
                kind: FaultKind::PodKill,
                namespace: "openalex".into(),
                pods: fastapi_pods[..1].to_vec(),
                grace_seconds: Some(0),
                owner: Touched::Pods {
                    namespace: "openalex".into(),
                    selector: "app=fastapi".into(),
                },
            }),
            "pod kill",
        ),
    ];
    for (fault, what) in faults {
        let before = state(&client).await;
        let mut scenario = ScenarioFaults::default();
        let injected = run
            .inject(&mut scenario, fault.as_ref())
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(injected.seq.is_some(), "{what}");
        // The fault took effect.
        let after = state(&client).await;
        match fault.kind() {
            FaultKind::PodKill => {
                let gone = Api::<Pod>::namespaced(client.clone(), "openalex")
                    .get_opt(&fastapi_pods[0])
                    .await
                    .unwrap()
                    .is_none_or(|p| p.metadata.deletion_timestamp.is_some());
                assert!(gone, "{what}: the pod is still there");
            }
            FaultKind::NodePower => {
                let states = after.power.as_array().unwrap();
                assert!(
                    states
                        .iter()
                        .any(|s| s["node"] == "dirqual3" && s["state"] == "off"),
                    "{what}: {states:?}"
                );
            }
            _ => assert_ne!(after, before, "{what}: the fault changed nothing"),
        }
        assert_eq!(scenario.active().len(), 1, "{what}");
        let reports = run.revert_scenario(&mut scenario).await;
        assert!(
            reports.iter().all(|r| r.outcome.is_ok()),
            "{what}: {reports:?}"
        );
        assert_restored(&client, &before, what).await;
    }
    // Everything was marked done in the journal.
    let journal = Contents::read(&dir.path().join("journal.jsonl")).unwrap();
    assert_eq!(journal.entries.len(), 8);
    assert!(journal.pending().is_empty(), "{journal:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preconditions_refuse_dangerous_faults() {
    let (_serial, kubeconfig) = shared_twin().await;
    let client = client_for(kubeconfig).await;
    // A pool of size 1 (as the twin's Rook operator makes it from its CephBlockPool):
    // OSD faults would make its data unavailable.
    set_pool_size(&client, "nvme-pool", 1).await;
    let start = Instant::now();
    let refused = loop {
        match resolve::refuse_pool_size_one(&client, "OSD 1 down").await {
            Err(e) => break e.to_string(),
            Ok(()) if start.elapsed() < WAIT => {
                tokio::time::sleep(Duration::from_millis(250)).await
            }
            Ok(()) => panic!("size 1 never refused"),
        }
    };
    set_pool_size(&client, "nvme-pool", 2).await;
    assert!(
        refused.contains("pool nvme-pool has size 1") && refused.contains("unavailable"),
        "{refused}"
    );
    let start = Instant::now();
    while resolve::refuse_pool_size_one(&client, "OSD 1 down")
        .await
        .is_err()
    {
        assert!(start.elapsed() < WAIT, "size 2 still refused");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Powering off all but one node is fine; the last Ready one is refused.
    assert!(resolve::refuse_last_ready_node(&client, "dirqual1")
        .await
        .is_ok());
    assert!(matches!(
        resolve::refuse_last_ready_node(&client, "nope").await,
        Err(FaultError::NotFound { .. })
    ));
}

async fn set_pool_size(client: &Client, pool: &str, size: u32) {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("ceph.rook.io", "v1", "CephBlockPool"),
        "cephblockpools",
    );
    Api::<DynamicObject>::namespaced_with(client.clone(), "rook-ceph", &ar)
        .patch(
            pool,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicated": {"size": size}}})),
        )
        .await
        .unwrap();
}

fn stormdrill(args: &[&str], extra: &[&Path]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stormdrill"));
    cmd.current_dir(manifest())
        .args(args)
        .args(extra)
        .env_remove("RUST_LOG");
    cmd
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Spawns `stormdrill run --target cluster` on the shared twin with long.feature.
fn spawn_long_run(kubeconfig: &Path, reports: &Path) -> Child {
    stormdrill(
        &[
            "run",
            "--target",
            "cluster",
            "--allow-destructive",
            "--seed",
            "9",
            "--kubeconfig",
        ],
        &[
            kubeconfig,
            Path::new("--report-dir"),
            reports,
            &fixture("long.feature"),
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("stormdrill run starts")
}

/// Waits until the run's journal holds `n` applied faults; returns its path.
fn wait_for_applies(reports: &Path, n: usize) -> PathBuf {
    let start = Instant::now();
    loop {
        let found = std::fs::read_dir(reports)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(Result::ok)
            .map(|e| e.path().join("journal.jsonl"))
            .filter(|p| p.exists());
        if let Some(path) = found {
            if let Ok(c) = Contents::read(&path) {
                if c.entries.len() >= n {
                    return path;
                }
            }
        }
        assert!(
            start.elapsed() < WAIT,
            "the harness did not inject {n} faults within {WAIT:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_output(child: Child) -> Output {
    // Bounded by the feature's own 30 s wait plus reverts.
    child.wait_with_output().unwrap()
}

#[test]
fn kill_9_mid_fault_then_recover_latest_restores_the_twin() {
    let (_serial, kubeconfig) = shared_twin_blocking();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = rt.block_on(client_for(kubeconfig));
    rt.block_on(set_opt_in(&client, Some(("openalex,rook-ceph", "*"))));
    let before = rt.block_on(state(&client));
    let reports = tempfile::tempdir().unwrap();

    let mut child = spawn_long_run(kubeconfig, reports.path());
    let journal = wait_for_applies(reports.path(), 4);
    // Let the last apply land, then check the faults are really in.
    std::thread::sleep(Duration::from_millis(500));
    let during = rt.block_on(state(&client));
    assert_eq!(during.replicas["StatefulSet openalex/postgresql"], 0);
    assert!(!during.osd_in[&2] && during.noout);
    assert_eq!(
        during.policies,
        ["openalex/stormdrill-isolate-app-postgresql"]
    );
    child.kill().unwrap(); // SIGKILL: no revert runs.
    let out = wait_output(child);
    assert_eq!(out.status.code(), None, "killed by a signal");
    assert_eq!(Contents::read(&journal).unwrap().pending().len(), 4);

    let out = stormdrill(
        &["recover", "--latest", "--report-dir"],
        &[reports.path(), Path::new("--kubeconfig"), kubeconfig],
    )
    .output()
    .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains("4 reverted, 0 failed, 0 were already done"),
        "{stdout}"
    );
    assert!(
        stdout.contains("scale StatefulSet openalex/postgresql back to 1 replicas"),
        "{stdout}"
    );
    rt.block_on(assert_restored(&client, &before, "after recover"));

    // Idempotent: a second recover finds nothing to do.
    let out = stormdrill(&["recover", "--kubeconfig"], &[kubeconfig, &journal])
        .output()
        .unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("nothing to recover"), "{stdout}");
    rt.block_on(set_opt_in(&client, None));
}

#[test]
fn sigint_mid_fault_reverts_and_exits_3() {
    let (_serial, kubeconfig) = shared_twin_blocking();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = rt.block_on(client_for(kubeconfig));
    rt.block_on(set_opt_in(&client, Some(("*", "*"))));
    let before = rt.block_on(state(&client));
    let reports = tempfile::tempdir().unwrap();

    let child = spawn_long_run(kubeconfig, reports.path());
    let journal = wait_for_applies(reports.path(), 4);
    std::thread::sleep(Duration::from_millis(500));
    let pid = i32::try_from(child.id()).unwrap();
    let interrupted = Instant::now();
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let out = wait_output(child);
    let exited = interrupted.elapsed();
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    let line = stdout
        .lines()
        .find(|l| l.contains("fault(s) left injected were reverted in"))
        .unwrap_or_else(|| panic!("no revert line in:\n{stdout}"));
    assert!(line.starts_with("4 fault(s)"), "{line}");
    eprintln!("SIGINT -> {line}; process exited {exited:?} after the signal");
    assert!(Contents::read(&journal).unwrap().pending().is_empty());
    rt.block_on(assert_restored(&client, &before, "after SIGINT"));
    rt.block_on(set_opt_in(&client, None));
}

fn cluster_run(kubeconfig: &Path, feature: &Path, reports: &Path) -> RunArgs {
    RunArgs {
        features: vec![feature.to_owned()],
        target: TargetKind::Cluster,
        kubeconfig: Some(kubeconfig.to_owned()),
        report_dir: reports.to_owned(),
        run_id: Some("r".into()),
        seed: Some(4),
        stack: stack_dir(),
        ..RunArgs::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_changes_nothing_and_prints_the_plan() {
    let (_serial, kubeconfig) = shared_twin().await;
    let client = client_for(kubeconfig).await;
    set_opt_in(&client, Some(("*", "*"))).await;
    let reports = tempfile::tempdir().unwrap();
    let versions = resource_versions(&client).await;
    let before = state(&client).await;
    let outcome = stormdrill::run(RunArgs {
        dry_run: true,
        ..cluster_run(kubeconfig, &fixture("dry-run.feature"), reports.path())
    })
    .await
    .unwrap();
    assert_eq!(outcome.verdict, Verdict::Go, "{:?}", outcome.summary);
    assert_eq!(resource_versions(&client).await, versions);
    assert_eq!(state(&client).await, before);
    let run_dir = reports.path().join("r");
    assert!(!run_dir.join("journal.jsonl").exists());
    let plan = std::fs::read_to_string(run_dir.join("plan.txt")).unwrap();
    let out = outcome.summary.scenarios[0].status;
    assert_eq!(out, ScenarioStatus::Passed);
    for expected in [
        "dry-run osd-down: scale Deployment rook-ceph/rook-ceph-osd-1 from 1 to 0 replicas",
        "revert:  scale Deployment rook-ceph/rook-ceph-osd-1 back to 1 replicas",
        "dry-run osd-out: run `ceph osd out 2`",
        "dry-run noout: run `ceph osd set noout`",
        "dry-run pod-kill: delete 2 pod(s) in openalex immediately (grace 0): fastapi-",
        "dry-run workload-outage: scale StatefulSet openalex/postgresql from 1 to 0 replicas",
        "dry-run node-drain: cordon node dirqual3 and evict its",
        "revert:  uncordon node dirqual3",
        "dry-run network-isolation: create NetworkPolicy openalex/stormdrill-isolate-app-postgresql",
        "revert:  delete NetworkPolicy openalex/stormdrill-isolate-app-postgresql",
    ] {
        assert!(plan.contains(expected), "{expected:?} not in:\n{plan}");
    }
    set_opt_in(&client, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_refuses_a_cluster_without_opt_in() {
    let (_serial, kubeconfig) = shared_twin().await;
    let client = client_for(kubeconfig).await;
    set_opt_in(&client, None).await;
    let versions = resource_versions(&client).await;
    let reports = tempfile::tempdir().unwrap();
    let args = cluster_run(kubeconfig, &fixture("guard.feature"), reports.path());

    // Without --allow-destructive: the run could not do what it was asked (exit 2).
    let outcome = stormdrill::run(args.clone()).await.unwrap();
    assert_eq!(outcome.verdict, Verdict::Error);
    let message = outcome.summary.scenarios[0].message.clone().unwrap();
    assert!(message.contains("pass --allow-destructive"), "{message}");

    // With it, but the cluster did not opt in: the message says how to.
    let outcome = stormdrill::run(RunArgs {
        allow_destructive: true,
        run_id: Some("r2".into()),
        ..args.clone()
    })
    .await
    .unwrap();
    let s = &outcome.summary.scenarios[0];
    assert_eq!(s.status, ScenarioStatus::Failed);
    assert_eq!(outcome.verdict, Verdict::Error);
    let message = s.message.clone().unwrap();
    assert!(
        message.contains("the cluster has not opted in to destructive faults: create ConfigMap stormdrill-allow in namespace kube-system")
            && message.contains("--from-literal=namespaces=openalex --from-literal=faults=pod-kill"),
        "{message}"
    );

    // Opted in for another namespace only.
    set_opt_in(&client, Some(("rook-ceph", "pod-kill"))).await;
    let outcome = stormdrill::run(RunArgs {
        allow_destructive: true,
        run_id: Some("r3".into()),
        ..args
    })
    .await
    .unwrap();
    let message = outcome.summary.scenarios[0].message.clone().unwrap();
    assert!(
        message.contains("namespace openalex is not in the allow list"),
        "{message}"
    );
    set_opt_in(&client, None).await;
    let mut now = resource_versions(&client).await;
    now.retain(|k, _| !k.starts_with("ConfigMap"));
    assert_eq!(now, versions, "a refused fault changed something");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_blocked_by_a_pdb_is_reported_not_hung() {
    let (_serial, kubeconfig) = shared_twin().await;
    let client = client_for(kubeconfig).await;
    set_opt_in(&client, Some(("*", "node-drain"))).await;
    let before = state(&client).await;
    // postgresql's PDB allows no disruption (maxUnavailable 0): its node cannot drain.
    let node = node_of(&client, "openalex", "postgresql-0").await;
    let dir = tempfile::tempdir().unwrap();
    let feature = dir.path().join("drain.feature");
    std::fs::write(
        &feature,
        format!(
            "Feature: drain\n  Scenario: blocked\n    When node \"{node}\" is drained within 3 \
             seconds\n"
        ),
    )
    .unwrap();
    let started = Instant::now();
    let outcome = stormdrill::run(RunArgs {
        allow_destructive: true,
        ..cluster_run(kubeconfig, &feature, &dir.path().join("reports"))
    })
    .await
    .unwrap();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(40),
        "the drain hung for {took:?}"
    );
    let message = outcome.summary.scenarios[0].message.clone().unwrap();
    assert!(
        message.starts_with(&format!("drain of node {node} blocked after"))
            && message
                .contains("pod openalex/postgresql-0 (PodDisruptionBudget openalex/postgresql:"),
        "{message}"
    );
    // The scenario's end uncordoned the node; evicted pods came back elsewhere.
    assert!(outcome.summary.scenarios[0].measurements["faults_reverted"] >= 1.0);
    set_opt_in(&client, None).await;
    assert_restored(&client, &before, "after the blocked drain").await;
}

/// Every fault step through the embedded twin target: its provider endpoint powers
/// nodes, and the stack is deployed by the step.
#[test]
fn every_fault_step_runs_on_the_embedded_twin() {
    let reports = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let outcome = rt
        .block_on(stormdrill::run(RunArgs {
            features: vec![fixture("each.feature")],
            report_dir: reports.path().to_owned(),
            run_id: Some("each".into()),
            seed: Some(2),
            stack: stack_dir(),
            ..RunArgs::default()
        }))
        .unwrap();
    assert_eq!(
        outcome.verdict,
        Verdict::Go,
        "{:?}",
        outcome.summary.scenarios
    );
    let s = &outcome.summary.scenarios[0];
    assert!(s.measurements.contains_key("fault_ack_ms"), "{s:?}");
    let journal = Contents::read(&reports.path().join("each/journal.jsonl")).unwrap();
    assert!(journal.pending().is_empty());
    let kinds: Vec<FaultKind> = journal.entries.iter().map(|e| e.fault).collect();
    for k in [
        FaultKind::OsdDown,
        FaultKind::OsdOut,
        FaultKind::Noout,
        FaultKind::NodePower,
        FaultKind::PodKill,
        FaultKind::WorkloadOutage,
        FaultKind::NetworkIsolation,
    ] {
        assert!(kinds.contains(&k), "{k} not in {kinds:?}");
    }
}

#[test]
fn recover_refuses_a_journal_of_another_cluster() {
    let (_serial, kubeconfig) = shared_twin_blocking();
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("journal.jsonl");
    std::fs::write(
        &journal,
        "{\"op\":\"run\",\"at\":\"2026-01-01T00:00:00Z\",\"run_id\":\"x\",\"target\":\"cluster\",\"server\":\"https://10.0.0.1:6443\"}\n\
         {\"op\":\"apply\",\"seq\":1,\"at\":\"2026-01-01T00:00:00Z\",\"fault\":\"node-drain\",\"action\":\"a\",\"revert\":{\"action\":\"uncordon\",\"node\":\"dirqual1\",\"was_unschedulable\":false}}\n",
    )
    .unwrap();
    let out = stormdrill(&["recover", "--kubeconfig"], &[kubeconfig, &journal])
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("was written against https://10.0.0.1:6443")
            && stderr.contains(&server_of(kubeconfig)),
        "{stderr}"
    );
}

/// Ceph HEALTH_ERR while faults are injected: the run stops, reverts and ends aborted
/// (exit 3), naming the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ceph_health_err_aborts_the_run_and_reverts() {
    let (_serial, kubeconfig) = shared_twin().await;
    let client = client_for(kubeconfig).await;
    set_opt_in(&client, Some(("*", "*"))).await;
    let before = state(&client).await;
    let reports = tempfile::tempdir().unwrap();
    let run = stormdrill::run(RunArgs {
        allow_destructive: true,
        ..cluster_run(kubeconfig, &fixture("long.feature"), reports.path())
    });
    let breaker = async {
        wait_for_applies_async(&reports.path().join("r"), 4).await;
        let ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("ceph.rook.io", "v1", "CephCluster"),
            "cephclusters",
        );
        let api = Api::<DynamicObject>::namespaced_with(client.clone(), "rook-ceph", &ar);
        // The twin's operator sets it back at its next reconcile; the watch sees it.
        api.patch_status(
            "rook-ceph",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"ceph": {"health": "HEALTH_ERR"}}})),
        )
        .await
        .unwrap();
    };
    let started = Instant::now();
    let (outcome, ()) = tokio::join!(run, breaker);
    let outcome = outcome.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "the run was not aborted"
    );
    assert_eq!(outcome.verdict, Verdict::Aborted, "{:?}", outcome.summary);
    assert!(
        outcome
            .summary
            .reasons
            .iter()
            .any(|r| r == "Ceph reports HEALTH_ERR (CephCluster rook-ceph/rook-ceph)"),
        "{:?}",
        outcome.summary.reasons
    );
    let journal = Contents::read(&reports.path().join("r/journal.jsonl")).unwrap();
    assert!(journal.pending().is_empty(), "{journal:?}");
    set_opt_in(&client, None).await;
    assert_restored(&client, &before, "after the abort").await;
}

async fn wait_for_applies_async(run_dir: &Path, n: usize) {
    let start = Instant::now();
    loop {
        if let Ok(c) = Contents::read(&run_dir.join("journal.jsonl")) {
            if c.entries.len() >= n {
                return;
            }
        }
        assert!(start.elapsed() < WAIT, "no {n} faults injected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A step that panics mid-apply, or a signal, loses the scenario's own record: the
/// journal still has it and the run's sweep reverts it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fault_whose_scenario_was_lost_is_reverted_by_the_sweep() {
    let (_serial, kubeconfig) = shared_twin().await;
    let client = client_for(kubeconfig).await;
    let dir = tempfile::tempdir().unwrap();
    let run = fault_run(&client, dir.path());
    let before = state(&client).await;
    let mut scenario = ScenarioFaults::default();
    let outage = ScaleToZero {
        kind: FaultKind::WorkloadOutage,
        workload: Workload {
            kind: WorkloadKind::Deployment,
            namespace: "openalex".into(),
            name: "fastapi".into(),
        },
    };
    run.inject(&mut scenario, &outage).await.unwrap();
    drop(scenario);
    assert_eq!(
        state(&client).await.replicas["Deployment openalex/fastapi"],
        0
    );
    let reports = run.sweep("run-end").await;
    assert_eq!(reports.len(), 1);
    assert!(reports[0].outcome.is_ok(), "{reports:?}");
    assert!(run.sweep("run-end").await.is_empty(), "swept twice");
    assert_restored(&client, &before, "after the sweep").await;
}
