//! Unmodified kubectl against `stormdrill twin serve`: get, apply -f, delete, wait,
//! api-resources. Needs kubectl on PATH (scripts/setup.sh checks it).

mod common;

use common::kubectl::{kubectl, ok, serve};
use std::time::Instant;

#[test]
fn kubectl_get_apply_wait_delete() {
    let s = serve();
    let kc = s.kubeconfig.as_path();

    let ns = ok(kc, &["get", "ns"]);
    assert!(ns.contains("kube-system") && ns.contains("Active"), "{ns}");
    let nodes = ok(kc, &["get", "nodes"]);
    assert!(
        nodes.contains("dirqual1") && nodes.contains("Ready"),
        "{nodes}"
    );

    let resources = ok(kc, &["api-resources"]);
    for r in [
        "deployments",
        "statefulsets",
        "poddisruptionbudgets",
        "customresourcedefinitions",
    ] {
        assert!(
            resources.contains(r),
            "api-resources lacks {r}:\n{resources}"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("app.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: demo\ndata:\n  mode: a\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: demo\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.27\n",
    )
    .unwrap();
    let applied = ok(kc, &["apply", "-f", manifest.to_str().unwrap()]);
    assert!(applied.contains("namespace/demo created"), "{applied}");
    assert!(applied.contains("deployment.apps/web created"), "{applied}");

    // Re-applying with a change goes through kubectl's client-side strategic patch.
    let changed = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("mode: a", "mode: b");
    std::fs::write(&manifest, changed).unwrap();
    let reapplied = ok(kc, &["apply", "-f", manifest.to_str().unwrap()]);
    assert!(
        reapplied.contains("configmap/settings configured"),
        "{reapplied}"
    );
    assert!(
        reapplied.contains("deployment.apps/web unchanged"),
        "{reapplied}"
    );
    let mode = ok(
        kc,
        &[
            "get",
            "configmap",
            "settings",
            "-n",
            "demo",
            "-o",
            "jsonpath={.data.mode}",
        ],
    );
    assert_eq!(mode, "b");

    // Server-side apply too.
    ok(
        kc,
        &["apply", "--server-side", "-f", manifest.to_str().unwrap()],
    );

    ok(
        kc,
        &["label", "configmap", "settings", "-n", "demo", "ready=yes"],
    );
    let waited = ok(
        kc,
        &[
            "wait",
            "--for=jsonpath={.metadata.labels.ready}=yes",
            "configmap/settings",
            "-n",
            "demo",
            "--timeout=20s",
        ],
    );
    assert!(waited.contains("condition met"), "{waited}");

    ok(
        kc,
        &["scale", "deployment/web", "-n", "demo", "--replicas=3"],
    );
    let replicas = ok(
        kc,
        &[
            "get",
            "deploy",
            "web",
            "-n",
            "demo",
            "-o",
            "jsonpath={.spec.replicas}",
        ],
    );
    assert_eq!(replicas, "3");

    let deleted = ok(kc, &["delete", "configmap", "settings", "-n", "demo"]);
    assert!(deleted.contains("deleted"), "{deleted}");
    let (found, _, err) = kubectl(kc, &["get", "configmap", "settings", "-n", "demo"]);
    assert!(!found && err.contains("NotFound"), "{err}");

    ok(
        kc,
        &[
            "delete",
            "namespace",
            "demo",
            "--wait=true",
            "--timeout=30s",
        ],
    );
    let (found, _, _) = kubectl(kc, &["get", "namespace", "demo"]);
    assert!(!found, "namespace demo still exists after delete --wait");
}

#[test]
fn kubectl_without_the_token_is_unauthorized() {
    let s = serve();
    let text = std::fs::read_to_string(&s.kubeconfig).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad");
    let token_line = text
        .lines()
        .find(|l| l.trim_start().starts_with("token:"))
        .unwrap();
    std::fs::write(&bad, text.replace(token_line, "    token: nope")).unwrap();
    let (success, _, err) = kubectl(&bad, &["get", "ns"]);
    assert!(!success);
    assert!(
        err.contains("Unauthorized") || err.contains("provide credentials"),
        "{err}"
    );
}

#[test]
fn kubectl_rollout_status_history_and_undo() {
    let s = serve();
    let kc = s.kubeconfig.as_path();
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("workloads.yaml");
    // The DaemonSet spells out its update strategy: the twin's API server does not
    // default it yet, and `kubectl rollout status` needs RollingUpdate.
    std::fs::write(
        &manifest,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 3\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.27\n---\napiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: db\nspec:\n  replicas: 3\n  serviceName: db\n  selector:\n    matchLabels: {app: db}\n  template:\n    metadata:\n      labels: {app: db}\n    spec:\n      containers:\n      - name: db\n        image: postgres:17\n---\napiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: agent\nspec:\n  updateStrategy:\n    type: RollingUpdate\n    rollingUpdate: {maxUnavailable: 1}\n  selector:\n    matchLabels: {app: agent}\n  template:\n    metadata:\n      labels: {app: agent}\n    spec:\n      containers:\n      - name: agent\n        image: agent:1\n---\napiVersion: batch/v1\nkind: Job\nmetadata:\n  name: once\nspec:\n  completions: 2\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: m\n        image: busybox:1.37\n",
    )
    .unwrap();
    ok(kc, &["apply", "-f", manifest.to_str().unwrap()]);
    let started = Instant::now();
    let out = ok(
        kc,
        &["rollout", "status", "deployment/web", "--timeout=60s"],
    );
    assert!(
        out.contains("deployment \"web\" successfully rolled out"),
        "{out}"
    );
    let out = ok(
        kc,
        &["rollout", "status", "statefulset/db", "--timeout=60s"],
    );
    assert!(
        out.contains("roll out complete: 3 new pods have been updated"),
        "{out}"
    );
    let out = ok(
        kc,
        &["rollout", "status", "daemonset/agent", "--timeout=60s"],
    );
    assert!(
        out.contains("daemon set \"agent\" successfully rolled out"),
        "{out}"
    );
    let out = ok(
        kc,
        &[
            "wait",
            "--for=condition=complete",
            "job/once",
            "--timeout=60s",
        ],
    );
    assert!(out.contains("condition met"), "{out}");
    eprintln!("all four workloads rolled out in {:?}", started.elapsed());

    ok(kc, &["set", "image", "deployment/web", "web=nginx:1.28"]);
    let out = ok(
        kc,
        &["rollout", "status", "deployment/web", "--timeout=60s"],
    );
    assert!(out.contains("successfully rolled out"), "{out}");
    let history = ok(kc, &["rollout", "history", "deployment/web"]);
    assert!(
        history.contains("\n1 ") && history.contains("\n2 "),
        "{history}"
    );
    let out = ok(kc, &["rollout", "undo", "deployment/web"]);
    assert!(out.contains("rolled back"), "{out}");
    let out = ok(
        kc,
        &["rollout", "status", "deployment/web", "--timeout=60s"],
    );
    assert!(out.contains("successfully rolled out"), "{out}");
    let image = ok(
        kc,
        &[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[0].image}",
        ],
    );
    assert_eq!(image, "nginx:1.27");
    // The roll back reused the first ReplicaSet (now revision 3).
    let rs = ok(kc, &["get", "rs", "-o", "name"]);
    assert_eq!(rs.lines().count(), 2, "{rs}");

    ok(kc, &["set", "image", "statefulset/db", "db=postgres:18"]);
    let out = ok(
        kc,
        &["rollout", "status", "statefulset/db", "--timeout=60s"],
    );
    assert!(out.contains("roll out complete"), "{out}");
    let images = ok(
        kc,
        &[
            "get",
            "pods",
            "-l",
            "app=db",
            "-o",
            "jsonpath={.items[*].spec.containers[0].image}",
        ],
    );
    assert_eq!(images, "postgres:18 postgres:18 postgres:18");
}

#[test]
fn kubectl_exec_and_logs() {
    let s = serve();
    let kc = s.kubeconfig.as_path();
    let pod = ok(
        kc,
        &[
            "get",
            "pods",
            "-n",
            "kube-system",
            "-l",
            "k8s-app=kube-dns",
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ],
    );
    assert!(pod.starts_with("coredns-"), "{pod}");

    // kubectl 1.31+ streams exec over WebSockets (v5.channel.k8s.io).
    let out = ok(kc, &["exec", "-n", "kube-system", &pod, "--", "echo", "hi"]);
    assert_eq!(out, "hi\n");
    let (success, _, err) = kubectl(
        kc,
        &[
            "exec",
            "-n",
            "kube-system",
            &pod,
            "--",
            "sh",
            "-c",
            "exit 3",
        ],
    );
    assert!(!success, "a failing command fails kubectl exec");
    assert!(err.contains("exit code 3"), "{err}");
    // -i: stdin (empty here) is closed with the v5 close signal.
    let out = ok(
        kc,
        &[
            "exec",
            "-i",
            "-n",
            "kube-system",
            &pod,
            "--",
            "sh",
            "-c",
            "cat; echo done",
        ],
    );
    assert_eq!(out, "done\n");
    let resolved = ok(
        kc,
        &[
            "exec",
            "-n",
            "kube-system",
            &pod,
            "--",
            "nslookup",
            "kubernetes.default",
        ],
    );
    assert!(
        resolved.contains("kubernetes.default.svc.cluster.local"),
        "{resolved}"
    );

    ok(kc, &["logs", "-n", "kube-system", &pod]);
    ok(
        kc,
        &[
            "logs",
            "-n",
            "kube-system",
            &pod,
            "--tail=5",
            "--timestamps",
        ],
    );
    let (found, _, err) = kubectl(kc, &["logs", "-n", "kube-system", "no-such-pod"]);
    assert!(!found && err.contains("NotFound"), "{err}");
}

#[test]
fn kubectl_drain_honours_pod_disruption_budgets() {
    let s = serve();
    let kc = s.kubeconfig.as_path();
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("web.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  namespace: default\nspec:\n  replicas: 3\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - name: web\n        image: nginx:1.27\n---\napiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: web\n  namespace: default\nspec:\n  minAvailable: 3\n  selector:\n    matchLabels: {app: web}\n",
    )
    .unwrap();
    ok(kc, &["apply", "-f", manifest.to_str().unwrap()]);
    ok(
        kc,
        &["rollout", "status", "deployment/web", "--timeout=30s"],
    );
    let node = ok(
        kc,
        &[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[0].spec.nodeName}",
        ],
    );
    assert!(node.starts_with("dirqual"), "{node}");

    // minAvailable 3 of 3: no eviction is allowed; drain reports it and gives up at its timeout.
    let (drained, out, err) = kubectl(
        kc,
        &[
            "drain",
            &node,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout=4s",
        ],
    );
    assert!(!drained, "drain must be blocked by the PDB:\n{out}\n{err}");
    assert!(
        err.contains("disruption budget"),
        "the PDB is named as the cause:\n{err}"
    );
    let cordoned = ok(
        kc,
        &["get", "node", &node, "-o", "jsonpath={.spec.unschedulable}"],
    );
    assert_eq!(cordoned, "true", "drain cordons first");

    // Once the budget allows one disruption at a time, the drain completes.
    ok(
        kc,
        &[
            "patch",
            "pdb",
            "web",
            "--type=merge",
            "-p",
            r#"{"spec":{"minAvailable":2}}"#,
        ],
    );
    let out = ok(
        kc,
        &[
            "drain",
            &node,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout=60s",
        ],
    );
    assert!(out.contains("drained"), "{out}");
    let still_there = ok(
        kc,
        &[
            "get",
            "pods",
            "-l",
            "app=web",
            "--field-selector",
            &format!("spec.nodeName={node}"),
            "-o",
            "name",
        ],
    );
    assert!(
        still_there.trim().is_empty(),
        "web pods left on {node}: {still_there}"
    );
    ok(
        kc,
        &["rollout", "status", "deployment/web", "--timeout=30s"],
    );
    ok(kc, &["uncordon", &node]);

    // A node without PDB-protected pods drains at once.
    let other = if node == "dirqual3" {
        "dirqual1"
    } else {
        "dirqual3"
    };
    ok(
        kc,
        &[
            "patch",
            "pdb",
            "web",
            "--type=merge",
            "-p",
            r#"{"spec":{"minAvailable":0}}"#,
        ],
    );
    let out = ok(
        kc,
        &[
            "drain",
            other,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout=60s",
        ],
    );
    assert!(out.contains("drained"), "{out}");
}
