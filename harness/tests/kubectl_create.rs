//! Unmodified kubectl against `stormdrill twin serve` where it uses client-go's typed
//! clients: `kubectl create <kind>` sends protobuf request bodies, `kubectl auth can-i`
//! a SelfSubjectAccessReview (impersonating with `--as`), `--list` a
//! SelfSubjectRulesReview, `auth whoami` a SelfSubjectReview. Each created object is
//! read back and checked. Runs PATH's kubectl (v1.32) and, when scripts/k8s-setup.sh
//! built it, kubectl v1.37.2 (skipped with a note otherwise).

mod common;

use std::path::Path;

use base64::Engine;
use common::kubectl::{kubectl_bin, ok, serve};
use serde_json::Value;

struct Kubectl<'a> {
    bin: &'a Path,
    kubeconfig: &'a Path,
}

impl Kubectl<'_> {
    /// Runs kubectl; fails the test unless it succeeds.
    fn ok(&self, args: &[&str]) -> String {
        let (success, stdout, stderr) = kubectl_bin(self.bin, self.kubeconfig, args);
        assert!(
            success,
            "{} {args:?} failed:\nstdout: {stdout}\nstderr: {stderr}",
            self.bin.display()
        );
        stdout
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(&[args, &["-o", "json"]].concat());
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}\n{out}"))
    }

    /// `kubectl auth can-i ...`: its exit status and what it printed.
    fn can_i(&self, args: &[&str]) -> (bool, String) {
        let (success, stdout, _) = kubectl_bin(
            self.bin,
            self.kubeconfig,
            &[&["auth", "can-i"], args].concat(),
        );
        (success, stdout.trim().to_string())
    }
}

fn exercise(k: &Kubectl<'_>, ns: &str) {
    let sa = format!("system:serviceaccount:{ns}:reader");
    let as_sa = format!("--as={sa}");

    // kubectl create <kind>: protobuf bodies.
    assert_eq!(
        k.ok(&["create", "namespace", ns]).trim(),
        format!("namespace/{ns} created")
    );
    let n = k.json(&["get", "namespace", ns]);
    assert_eq!(n["metadata"]["labels"]["kubernetes.io/metadata.name"], ns);
    assert_eq!(n["status"]["phase"], "Active");

    k.ok(&[
        "create",
        "configmap",
        "settings",
        "-n",
        ns,
        "--from-literal=mode=fast",
        "--from-literal=level=3",
    ]);
    let cm = k.json(&["get", "configmap", "settings", "-n", ns]);
    assert_eq!(
        cm["data"],
        serde_json::json!({"mode": "fast", "level": "3"})
    );

    k.ok(&[
        "create",
        "secret",
        "generic",
        "db",
        "-n",
        ns,
        "--from-literal=password=s3cr=t ü",
    ]);
    let s = k.json(&["get", "secret", "db", "-n", ns]);
    let password = base64::engine::general_purpose::STANDARD
        .decode(s["data"]["password"].as_str().expect("secret data"))
        .unwrap();
    assert_eq!(String::from_utf8(password).unwrap(), "s3cr=t ü");
    assert_eq!(s["type"], "Opaque");

    k.ok(&[
        "create",
        "deployment",
        "web",
        "-n",
        ns,
        "--image=nginx:1.27",
        "--replicas=3",
        "--port=8080",
    ]);
    let d = k.json(&["get", "deployment", "web", "-n", ns]);
    assert_eq!(d["spec"]["replicas"], 3);
    assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "web");
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "nginx:1.27");
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    assert_eq!(d["spec"]["strategy"]["type"], "RollingUpdate");
    // --replicas=0 is a pointer to zero in protobuf: it must stay 0, not default to 1.
    k.ok(&[
        "create",
        "deployment",
        "idle",
        "-n",
        ns,
        "--image=busybox",
        "--replicas=0",
    ]);
    assert_eq!(
        k.json(&["get", "deployment", "idle", "-n", ns])["spec"]["replicas"],
        0
    );

    k.ok(&[
        "create",
        "service",
        "clusterip",
        "web",
        "-n",
        ns,
        "--tcp=80:8080",
    ]);
    let svc = k.json(&["get", "service", "web", "-n", ns]);
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(svc["spec"]["ports"][0]["port"], 80);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);
    assert!(svc["spec"]["clusterIP"]
        .as_str()
        .is_some_and(|ip| !ip.is_empty()));

    k.ok(&[
        "create",
        "job",
        "once",
        "-n",
        ns,
        "--image=busybox",
        "--",
        "echo",
        "hi",
    ]);
    let j = k.json(&["get", "job", "once", "-n", ns]);
    let jc = &j["spec"]["template"]["spec"];
    assert_eq!(
        jc["containers"][0]["command"],
        serde_json::json!(["echo", "hi"])
    );
    assert_eq!(jc["restartPolicy"], "Never");

    k.ok(&["create", "serviceaccount", "reader", "-n", ns]);
    assert_eq!(
        k.json(&["get", "serviceaccount", "reader", "-n", ns])["metadata"]["name"],
        "reader"
    );

    k.ok(&[
        "create",
        "pdb",
        "web",
        "-n",
        ns,
        "--selector=app=web",
        "--min-available=50%",
    ]);
    // An IntOrString holding a string.
    assert_eq!(
        k.json(&["get", "pdb", "web", "-n", ns])["spec"]["minAvailable"],
        "50%"
    );
    k.ok(&[
        "create",
        "quota",
        "small",
        "-n",
        ns,
        "--hard=cpu=2,memory=1Gi,pods=10",
    ]);
    assert_eq!(
        k.json(&["get", "quota", "small", "-n", ns])["spec"]["hard"],
        serde_json::json!({"cpu": "2", "memory": "1Gi", "pods": "10"})
    );

    let pc = format!("{ns}-high");
    k.ok(&["create", "priorityclass", &pc, "--value=1000"]);
    assert_eq!(k.json(&["get", "priorityclass", &pc])["value"], 1000);
    k.ok(&[
        "create",
        "cronjob",
        "tick",
        "-n",
        ns,
        "--image=busybox",
        "--schedule=*/5 * * * *",
        "--",
        "date",
    ]);
    assert_eq!(
        k.json(&["get", "cronjob", "tick", "-n", ns])["spec"]["schedule"],
        "*/5 * * * *"
    );
    k.ok(&[
        "create",
        "ingress",
        "web",
        "-n",
        ns,
        "--rule=example.com/api=web:80",
    ]);
    let rule = &k.json(&["get", "ingress", "web", "-n", ns])["spec"]["rules"][0];
    assert_eq!(rule["host"], "example.com");
    let path = &rule["http"]["paths"][0];
    assert_eq!(path["path"], "/api");
    assert_eq!(path["backend"]["service"]["name"], "web");
    assert_eq!(path["backend"]["service"]["port"]["number"], 80);

    // RBAC for the service account, created the same way.
    k.ok(&[
        "create",
        "role",
        "pod-reader",
        "-n",
        ns,
        "--verb=get,list",
        "--resource=pods",
    ]);
    let role = k.json(&["get", "role", "pod-reader", "-n", ns]);
    assert_eq!(
        role["rules"][0]["verbs"],
        serde_json::json!(["get", "list"])
    );
    let subject = format!("{ns}:reader");
    k.ok(&[
        "create",
        "rolebinding",
        "readers",
        "-n",
        ns,
        "--role=pod-reader",
        &format!("--serviceaccount={subject}"),
    ]);
    let rb = k.json(&["get", "rolebinding", "readers", "-n", ns]);
    assert_eq!(rb["subjects"][0]["kind"], "ServiceAccount");
    assert_eq!(rb["subjects"][0]["namespace"], ns);

    // kubectl auth can-i: exit 0 and "yes", or exit 1 and "no".
    assert_eq!(
        k.can_i(&["create", "deployments", "-n", ns]),
        (true, "yes".into())
    );
    assert_eq!(k.can_i(&["*", "*"]), (true, "yes".into()));
    assert_eq!(
        k.can_i(&["list", "pods", "-n", ns, &as_sa]),
        (true, "yes".into())
    );
    assert_eq!(
        k.can_i(&["get", "pods", "--subresource=log", "-n", ns, &as_sa]),
        (false, "no".into()),
        "a subresource needs its own rule"
    );
    assert_eq!(
        k.can_i(&["delete", "pods", "-n", ns, &as_sa]),
        (false, "no".into())
    );
    assert_eq!(
        k.can_i(&["list", "pods", "-n", "default", &as_sa]),
        (false, "no".into())
    );
    assert_eq!(
        k.can_i(&["create", "secrets", "-n", ns, &as_sa]),
        (false, "no".into())
    );

    let list = k.ok(&["auth", "can-i", "--list", "-n", ns, &as_sa]);
    let pods_line = list
        .lines()
        .find(|l| l.starts_with("pods "))
        .unwrap_or_else(|| panic!("no pods rule in:\n{list}"));
    assert!(pods_line.contains("[get list]"), "{list}");
    assert!(!list.contains("secrets"), "{list}");
    let admin_list = k.ok(&["auth", "can-i", "--list", "-n", ns]);
    assert!(
        admin_list
            .lines()
            .any(|l| l.starts_with("*.* ") && l.contains("[*]")),
        "{admin_list}"
    );

    let who = k.ok(&["auth", "whoami", &as_sa]);
    assert!(who.contains(&sa), "{who}");
    assert!(
        who.contains(&format!("system:serviceaccounts:{ns}")),
        "{who}"
    );

    // The impersonated user is what the server authorizes, not just what can-i says.
    k.ok(&["get", "pods", "-n", ns, &as_sa]);
    let (allowed, _, err) = kubectl_bin(k.bin, k.kubeconfig, &["get", "secrets", "-n", ns, &as_sa]);
    assert!(!allowed, "the reader listed secrets");
    assert!(
        err.contains(&format!(
            "User \"{sa}\" cannot list resource \"secrets\" in API group \"\" in the namespace \"{ns}\""
        )),
        "{err}"
    );
}

#[test]
fn kubectl_create_and_auth_can_i() {
    let served = serve();
    let kc = served.kubeconfig.as_path();
    let path_version = ok(kc, &["version", "--client"]);
    eprintln!(
        "PATH's kubectl: {}",
        path_version.lines().next().unwrap_or("")
    );
    exercise(
        &Kubectl {
            bin: Path::new("kubectl"),
            kubeconfig: kc,
        },
        "create-path",
    );
    let k137 = stormdrill_twin::controlplane::real::default_bin_dir().join("kubectl");
    if k137.exists() {
        let k = Kubectl {
            bin: &k137,
            kubeconfig: kc,
        };
        assert!(k.ok(&["version", "--client"]).contains("v1.37.2"));
        exercise(&k, "create-137");
    } else {
        eprintln!(
            "NOTE: {} is missing (scripts/k8s-setup.sh builds it): kubectl v1.37.2 not run",
            k137.display()
        );
    }
}

#[tokio::test]
async fn a_malformed_protobuf_body_is_a_400() {
    let served = serve();
    let kc = kube::config::Kubeconfig::read_from(&served.kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    let post = |body: &[u8]| {
        http::Request::post("/api/v1/namespaces/default/configmaps")
            .header("Content-Type", "application/vnd.kubernetes.protobuf")
            .body(body.to_vec())
            .unwrap()
    };
    for (body, says) in [
        (
            &b"k8s\0\x0a\xff\x01"[..],
            "malformed runtime.Unknown envelope",
        ),
        (&b"{\"kind\":\"ConfigMap\"}"[..], "k8s\\x00"),
    ] {
        match client.request_text(post(body)).await {
            Err(kube::Error::Api(s)) => {
                assert_eq!((s.code, s.reason.as_str()), (400, "BadRequest"), "{s:?}");
                assert!(
                    s.message.contains("error decoding protobuf"),
                    "{}",
                    s.message
                );
                assert!(s.message.contains(says), "{}", s.message);
            }
            other => panic!("{body:?}: expected 400, got {other:?}"),
        }
    }
    // The server is still there: a JSON client is served as before.
    let cms: Value = serde_json::from_str(
        &client
            .request_text(
                http::Request::get("/api/v1/namespaces/default/configmaps")
                    .body(Vec::new())
                    .unwrap(),
            )
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(cms["kind"], "ConfigMapList");
}
