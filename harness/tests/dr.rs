//! The Velero disaster-recovery drill on the twin, through `stormdrill::run` as the CLI
//! runs it: the drill passes with an RPO inside the bounds the markers allow and no
//! marker written after the backup restored; an unavailable backup location stops it
//! at the pre-check with nothing deleted; a missing Schedule fails the schedule check;
//! a restore that ends PartiallyFailed fails the drill with Velero's errors dumped.
//!
//! The last two failing cases run against a twin this test serves itself (as a
//! `cluster` target), so that it can look at, or act on, the cluster during and after
//! the run.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::{
    api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams},
    config::{KubeConfigOptions, Kubeconfig},
    core::{ApiResource, GroupVersionKind},
    Client, Config,
};
use serde_json::{json, Value};
use stormdrill::{
    cli::RunArgs,
    report::ScenarioRecord,
    target::{self, TargetKind, TimingProfile},
    verdict::{ScenarioStatus, Verdict},
    Outcome,
};

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    manifest().join("tests/fixtures/dr").join(name)
}

fn args(feature: &str, reports: &Path, run_id: &str) -> RunArgs {
    RunArgs {
        features: vec![fixture(feature)],
        stack: manifest().join("../fixtures/stack"),
        target: TargetKind::Twin,
        report_dir: reports.to_owned(),
        run_id: Some(run_id.to_owned()),
        seed: Some(11),
        ..RunArgs::default()
    }
}

async fn run(args: RunArgs) -> Outcome {
    let outcome = stormdrill::run(args).await.expect("the harness runs");
    for line in outcome.closing_lines() {
        println!("{line}");
    }
    outcome
}

fn only_scenario(outcome: &Outcome) -> &ScenarioRecord {
    assert_eq!(
        outcome.summary.scenarios.len(),
        1,
        "{:?}",
        outcome.summary.scenarios
    );
    &outcome.summary.scenarios[0]
}

async fn client_for(kubeconfig: &Path) -> Client {
    let kc = Kubeconfig::read_from(kubeconfig).unwrap();
    let mut config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    config.default_retry = false;
    Client::try_from(config).unwrap()
}

/// A twin this test holds, reached by the harness as a `cluster` target.
async fn served(defects: &[&str], dir: &Path) -> (target::ServedTwin, Client) {
    let defects: Vec<String> = defects.iter().map(|d| d.to_string()).collect();
    let kubeconfig = dir.join("kubeconfig");
    let twin = target::serve_twin(0, 11, TimingProfile::Fast, &defects, &kubeconfig)
        .await
        .expect("twin starts");
    let client = client_for(&kubeconfig).await;
    (twin, client)
}

fn cluster_args(feature: &str, reports: &Path, run_id: &str, kubeconfig: &Path) -> RunArgs {
    RunArgs {
        target: TargetKind::Cluster,
        kubeconfig: Some(kubeconfig.to_owned()),
        allow_destructive: true,
        ..args(feature, reports, run_id)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drill_restores_what_the_backup_holds() {
    let reports = tempfile::tempdir().unwrap();
    let outcome = run(args("drill.feature", reports.path(), "drill")).await;
    let s = only_scenario(&outcome);
    assert_eq!(s.status, ScenarioStatus::Passed, "{:?}", s.message);
    assert_eq!(
        outcome.verdict,
        Verdict::Go,
        "{:?}",
        outcome.summary.reasons
    );
    let m = &s.measurements;
    println!("measurements: {m:#?}");

    // RPO: the newest surviving marker is at least the last one committed before the
    // backup was created (rpo_max_s), and no later than the backup's completion
    // (rpo_min_s); so it lies within the backup-to-disaster gap, plus one interval.
    let rpo = m["rpo_s"];
    assert!(rpo > 0.0, "{rpo}");
    assert!(m["rpo_min_s"] <= rpo && rpo <= m["rpo_max_s"], "{m:?}");
    assert!(rpo <= m["backup_to_disaster_s"] + 0.25 + 0.5, "{m:?}");
    assert!(m["rto_s"] > 0.0 && m["rto_s"] < 120.0, "{m:?}");
    assert!(m["backup_s"] > 0.0 && m["restore_s"] > 0.0, "{m:?}");
    // Markers were written on both sides of the backup; only those before it came back.
    assert!(m["markers_before_backup"] >= 3.0, "{m:?}");
    assert!(m["markers_after_backup"] >= 2.0, "{m:?}");
    assert_eq!(m["markers_after_backup_present"], 0.0, "{m:?}");
    assert_eq!(m["markers_lost_before_backup"], 0.0, "{m:?}");
    assert_eq!(m["works_count"], 50.0);
    // The ConfigMap fallback agrees within a marker.
    assert!((m["rpo_configmaps_s"] - rpo).abs() <= 0.3, "{m:?}");
    let names: Vec<&str> = s.criteria.iter().map(|c| c.name.as_str()).collect();
    for c in [
        "markers_after_backup_present",
        "restore_s",
        "rpo_s",
        "markers_lost_before_backup",
        "works_count",
    ] {
        assert!(names.contains(&c), "{names:?}");
    }

    // The drill's records: the disaster journaled ahead and closed by the restore.
    let dir = reports.path().join("drill/dr-velero-dr-quick");
    let journal = std::fs::read_to_string(dir.join("journal.jsonl")).unwrap();
    let ops: Vec<Value> = journal
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(ops[1]["op"], "apply");
    assert_eq!(ops[1]["fault"], "disaster");
    assert!(ops[1]["action"]
        .as_str()
        .unwrap()
        .starts_with("delete namespace(s) openalex"));
    assert_eq!(ops[2]["op"], "done");
    let drill: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("drill.json")).unwrap()).unwrap();
    assert_eq!(drill["backup"]["status"]["phase"], "Completed");
    assert_eq!(drill["restore"]["status"]["phase"], "Completed");
    let csv = std::fs::read_to_string(dir.join("markers.csv")).unwrap();
    assert!(
        csv.starts_with("seq,written_at,acked_at,db,configmap\n1,"),
        "{csv}"
    );
    assert!(!dir.join("failure.txt").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_backup_location_stops_the_drill_before_the_disaster() {
    let dir = tempfile::tempdir().unwrap();
    let (twin, client) = served(&["bsl-unavailable"], dir.path()).await;
    // The stack's own readiness wait would stop at the location: deploy it here.
    let stack = stormdrill::stack::load_dir(&manifest().join("../fixtures/stack")).unwrap();
    stormdrill::stack::apply(&client, &stack, Duration::from_secs(60), |_| {})
        .await
        .unwrap();
    let others: Vec<_> = stack
        .into_iter()
        .filter(|m| m.kind() != "BackupStorageLocation")
        .collect();
    let not_ready =
        stormdrill::stack::ready::wait_ready(&client, &others, Duration::from_secs(120))
            .await
            .unwrap();
    assert!(not_ready.is_empty(), "{not_ready:?}");
    let reports = dir.path().join("reports");
    let outcome = run(cluster_args(
        "deployed.feature",
        &reports,
        "bsl",
        twin.kubeconfig_path(),
    ))
    .await;
    let s = only_scenario(&outcome);
    assert_eq!(s.status, ScenarioStatus::Failed);
    assert_eq!(outcome.verdict, Verdict::NoGo);
    let msg = s.message.clone().unwrap();
    assert!(
        msg.contains("pre-check failed: BackupStorageLocation velero/default is Unavailable")
            && msg.contains("no such host")
            && msg.contains("the drill stopped before any backup or deletion"),
        "{msg}"
    );
    // Nothing was deleted, nothing journaled; the dump says why.
    let ns: Api<Namespace> = Api::all(client.clone());
    assert!(ns.get_opt("openalex").await.unwrap().is_some());
    let markers = Api::<ConfigMap>::namespaced(client.clone(), "openalex")
        .list(&ListParams::default().labels("stormdrill.io/marker-run"))
        .await
        .unwrap();
    assert!(
        markers.items.is_empty(),
        "the failed drill cleans its marker ConfigMaps up"
    );
    let dump = reports.join("bsl/dr-velero-dr-quick");
    assert!(
        msg.contains(&format!("details in {}", dump.display())),
        "{msg}"
    );
    assert!(!dump.join("journal.jsonl").exists());
    let bsl = std::fs::read_to_string(dump.join("backupstoragelocation.json")).unwrap();
    assert!(bsl.contains("Unavailable"), "{bsl}");
    twin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_schedule_fails_the_schedule_check() {
    let reports = tempfile::tempdir().unwrap();
    let outcome = run(RunArgs {
        defects: vec!["no-velero-schedule".into()],
        ..args("schedule.feature", reports.path(), "schedule")
    })
    .await;
    let s = only_scenario(&outcome);
    assert_eq!(s.status, ScenarioStatus::Failed);
    assert_eq!(outcome.verdict, Verdict::NoGo);
    let msg = s.message.clone().unwrap();
    assert!(
        msg.contains("expected Velero Schedule velero/daily-openalex, but it does not exist"),
        "{msg}"
    );
    let exists = s
        .criteria
        .iter()
        .find(|c| c.name == "velero_schedule_exists")
        .unwrap();
    assert!(!exists.pass && exists.gating);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_documented_schedule_passes() {
    let reports = tempfile::tempdir().unwrap();
    let outcome = run(args("schedule.feature", reports.path(), "schedule-ok")).await;
    let s = only_scenario(&outcome);
    assert_eq!(s.status, ScenarioStatus::Passed, "{:?}", s.message);
    assert!(s.criteria.iter().all(|c| c.pass), "{:?}", s.criteria);
    let age = s
        .criteria
        .iter()
        .find(|c| c.name == "velero_schedule_backup_age_h")
        .unwrap();
    assert!(age.figure < 0.1 && age.threshold == 26.0, "{age:?}");
}

fn velero(client: &Client, kind: &str, plural: &str, ns: Option<&str>) -> Api<DynamicObject> {
    let (group, version) = if kind == "K8sDisallowedTags" {
        ("constraints.gatekeeper.sh", "v1beta1")
    } else {
        ("velero.io", "v1")
    };
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partially_failed_restore_fails_the_drill() {
    let dir = tempfile::tempdir().unwrap();
    let (twin, client) = served(&[], dir.path()).await;
    // The cluster opts in to the disaster on openalex.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
    let allow: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "stormdrill-allow"},
        "data": {"namespaces": "openalex", "faults": "disaster"},
    }))
    .unwrap();
    cms.create(&PostParams::default(), &allow).await.unwrap();

    // A pod no controller owns (so Velero backs it up) runs in openalex before the
    // backup; once the backup is Completed, Gatekeeper starts refusing its image tag,
    // as a policy tightened between backup and restore does on a real cluster: its
    // restore fails and the Restore ends PartiallyFailed.
    let actor = {
        let client = client.clone();
        tokio::spawn(async move {
            let pods: Api<Pod> = Api::namespaced(client.clone(), "openalex");
            let pod: Pod = serde_json::from_value(json!({
                "metadata": {"name": "legacy-tool"},
                "spec": {"containers": [{"name": "tool", "image": "busybox:1.36", "command": ["sleep", "3600"]}]},
            }))
            .unwrap();
            while pods.create(&PostParams::default(), &pod).await.is_err() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let backups = velero(&client, "Backup", "backups", Some("velero"));
            loop {
                let done = backups
                    .list(&ListParams::default().labels("app.kubernetes.io/managed-by=stormdrill"))
                    .await
                    .map(|l| {
                        l.items
                            .iter()
                            .any(|b| b.data["status"]["phase"] == "Completed")
                    })
                    .unwrap_or(false);
                if done {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let constraints = velero(&client, "K8sDisallowedTags", "k8sdisallowedtags", None);
            constraints
                .patch(
                    "images-must-have-explicit-tag",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"parameters": {"tags": ["latest", "1.36"]}}})),
                )
                .await
                .unwrap();
        })
    };
    let reports = dir.path().join("reports");
    let outcome = run(cluster_args(
        "drill.feature",
        &reports,
        "partial",
        twin.kubeconfig_path(),
    ))
    .await;
    actor.await.unwrap();
    let s = only_scenario(&outcome);
    assert_eq!(s.status, ScenarioStatus::Failed);
    assert_eq!(outcome.verdict, Verdict::NoGo);
    let msg = s.message.clone().unwrap();
    assert!(
        msg.contains("ended phase PartiallyFailed, 1 error(s)"),
        "{msg}"
    );
    assert_eq!(s.measurements["restore_errors"], 1.0);
    let dump = reports.join("partial/dr-velero-dr-quick");
    let log = std::fs::read_to_string(dump.join("velero.log")).unwrap();
    assert!(
        log.contains("error restoring pods/openalex/legacy-tool")
            && log.contains("denied the request"),
        "{log}"
    );
    let restore: Value =
        serde_json::from_str(&std::fs::read_to_string(dump.join("restore.json")).unwrap()).unwrap();
    assert_eq!(restore["status"]["phase"], "PartiallyFailed");
    assert!(dump.join("events.txt").exists());
    twin.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_plans_the_drill_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (twin, client) = served(&[], dir.path()).await;
    let report = stormdrill::stack::deploy(
        &client,
        &manifest().join("../fixtures/stack"),
        Duration::from_secs(120),
        |_| {},
    )
    .await
    .unwrap();
    assert!(report.not_ready.is_empty(), "{:?}", report.not_ready);
    let reports = dir.path().join("reports");
    // A cluster that did not opt in: the dry run says what the real run would refuse.
    let outcome = run(RunArgs {
        dry_run: true,
        allow_destructive: false,
        ..cluster_args("deployed.feature", &reports, "dry", twin.kubeconfig_path())
    })
    .await;
    let s = only_scenario(&outcome);
    assert_eq!(s.status, ScenarioStatus::Failed);
    let msg = s.message.clone().unwrap();
    assert!(
        msg.contains("refused: the cluster has not opted in"),
        "{msg}"
    );
    // On the twin's own terms (opted in), the whole drill is only planned.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
    let allow: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "stormdrill-allow"},
        "data": {"namespaces": "openalex", "faults": "disaster"},
    }))
    .unwrap();
    cms.create(&PostParams::default(), &allow).await.unwrap();
    let outcome = run(RunArgs {
        dry_run: true,
        ..cluster_args("deployed.feature", &reports, "dry2", twin.kubeconfig_path())
    })
    .await;
    let s = only_scenario(&outcome);
    assert_eq!(s.status, ScenarioStatus::Passed, "{:?}", s.message);
    assert!(s.criteria.is_empty() && s.measurements.is_empty(), "{s:?}");
    let backups = velero(&client, "Backup", "backups", Some("velero"));
    let ours = backups
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=stormdrill"))
        .await
        .unwrap();
    assert!(ours.items.is_empty(), "a dry run creates no Backup");
    let markers = Api::<ConfigMap>::namespaced(client.clone(), "openalex")
        .list(&ListParams::default().labels("stormdrill.io/marker-run"))
        .await
        .unwrap();
    assert!(markers.items.is_empty(), "a dry run writes no marker");
    assert!(Api::<Namespace>::all(client.clone())
        .get_opt("openalex")
        .await
        .unwrap()
        .is_some());
    twin.stop().await;
}
