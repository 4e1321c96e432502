//! Velero on the twin, through the API as a client sees it: the documented stack is
//! deployed with the harness's own deploy path, rows are written to PostgreSQL, a
//! backup is taken, more rows are written, the namespace is deleted, and a restore
//! brings back exactly the rows written before the backup.

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, AttachParams, DeleteParams, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, Config};
use serde_json::json;
use stormdrill_twin::{Twin, TwinOptions};
use tokio::io::AsyncReadExt;

async fn client_for(twin: &Twin) -> Client {
    let kc = kube::config::Kubeconfig::from_yaml(&twin.kubeconfig_yaml()).unwrap();
    let mut config = Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    config.default_retry = false;
    Client::try_from(config).unwrap()
}

async fn psql(client: &Client, sql: &str) -> (String, String) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "openalex");
    let ap = AttachParams::default()
        .container("postgresql")
        .stdout(true)
        .stderr(true);
    let mut p = pods
        .exec(
            "postgresql-0",
            [
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
            ],
            &ap,
        )
        .await
        .expect("exec into postgresql-0");
    let (mut out, mut err) = (String::new(), String::new());
    p.stdout().unwrap().read_to_string(&mut out).await.unwrap();
    p.stderr().unwrap().read_to_string(&mut err).await.unwrap();
    p.join().await.unwrap();
    (out, err)
}

async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {secs}s waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn velero(client: &Client, kind: &str, plural: &str) -> Api<DynamicObject> {
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("velero.io", "v1", kind), plural);
    Api::namespaced_with(client.clone(), "velero", &ar)
}

async fn phase(api: &Api<DynamicObject>, name: &str) -> Option<String> {
    api.get(name).await.ok()?.data["status"]["phase"]
        .as_str()
        .map(String::from)
}

#[tokio::test]
async fn backup_delete_restore_keeps_rows_written_before_the_backup() {
    let twin = Twin::start(TwinOptions {
        seed: 3,
        ..Default::default()
    })
    .await
    .unwrap();
    let client = client_for(&twin).await;
    let stack = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/stack");
    let report = stormdrill::stack::deploy(&client, &stack, Duration::from_secs(90), |_| {})
        .await
        .unwrap();
    assert!(
        report.not_ready.is_empty(),
        "stack not ready: {:?}",
        report.not_ready
    );

    let (_, err) = psql(
        &client,
        "CREATE TABLE IF NOT EXISTS markers (id bigserial primary key, note text)",
    )
    .await;
    assert!(err.is_empty(), "{err}");
    psql(
        &client,
        "INSERT INTO markers (note) VALUES ('before-1'), ('before-2')",
    )
    .await;

    let backups = velero(&client, "Backup", "backups");
    let b: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "velero.io/v1", "kind": "Backup", "metadata": {"name": "drill-1", "namespace": "velero"},
        "spec": {"includedNamespaces": ["openalex"], "storageLocation": "default", "ttl": "24h0m0s", "snapshotVolumes": true, "defaultVolumesToFsBackup": true}
    }))
    .unwrap();
    backups.create(&PostParams::default(), &b).await.unwrap();
    let done = eventually(30, "backup Completed", || async {
        match phase(&backups, "drill-1").await.as_deref() {
            Some("Completed") => Some(true),
            Some("Failed") | Some("PartiallyFailed") | Some("FailedValidation") => Some(false),
            _ => None,
        }
    })
    .await;
    assert!(
        done,
        "backup failed: {:?}",
        backups.get("drill-1").await.unwrap().data["status"]
    );
    let st = backups.get("drill-1").await.unwrap().data["status"].clone();
    assert!(
        st["progress"]["itemsBackedUp"].as_i64().unwrap() > 10,
        "{st}"
    );
    assert_eq!(
        st["progress"]["itemsBackedUp"],
        st["progress"]["totalItems"]
    );

    psql(&client, "INSERT INTO markers (note) VALUES ('after-1')").await;

    // The disaster.
    let nss: Api<Namespace> = Api::all(client.clone());
    nss.delete("openalex", &DeleteParams::default())
        .await
        .unwrap();
    eventually(30, "namespace openalex gone", || async {
        nss.get_opt("openalex")
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;

    let restores = velero(&client, "Restore", "restores");
    let r: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "velero.io/v1", "kind": "Restore", "metadata": {"name": "drill-1-restore", "namespace": "velero"},
        "spec": {"backupName": "drill-1"}
    }))
    .unwrap();
    restores.create(&PostParams::default(), &r).await.unwrap();
    eventually(60, "restore Completed", || async {
        (phase(&restores, "drill-1-restore").await.as_deref() == Some("Completed")).then_some(())
    })
    .await;

    let pods: Api<Pod> = Api::namespaced(client.clone(), "openalex");
    eventually(60, "postgresql-0 Ready again", || async {
        let p = pods.get_opt("postgresql-0").await.ok()??;
        let ready = p
            .status?
            .conditions?
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        ready.then_some(())
    })
    .await;
    let (rows, err) = psql(&client, "SELECT note FROM markers ORDER BY id").await;
    assert!(err.is_empty(), "{err}");
    let notes: Vec<&str> = rows.lines().collect();
    assert_eq!(
        notes,
        ["before-1", "before-2"],
        "rows before the backup are back, the one after is not"
    );
    let (count, _) = psql(&client, "SELECT count(*) FROM works").await;
    assert_eq!(
        count.trim(),
        "50",
        "the API's data came back with the volume"
    );
    twin.shutdown().await;
}
