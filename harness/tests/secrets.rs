//! Secrets never reach a run's output: the kubeconfig's bearer token and a password a
//! target config's power command takes from the environment (`${VAR}`) are looked for
//! in stdout, stderr and every file of the run's report folder.

use std::{
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::Duration,
};

const SECRET_VAR: &str = "STORMDRILL_TEST_IPMI_PASSWORD";

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A bare twin (`twin serve`, no stack), killed when dropped.
struct Twin {
    child: Child,
    kubeconfig: PathBuf,
}

impl Drop for Twin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(dir: &Path) -> Twin {
    let kubeconfig = dir.join("kubeconfig");
    let mut child = Command::new(env!("CARGO_BIN_EXE_stormdrill"))
        .args(["twin", "serve", "--kubeconfig-out"])
        .arg(&kubeconfig)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("twin serve starts");
    let out = BufReader::new(child.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    // Reads to the end: a closed pipe would kill the twin at its next line.
    std::thread::spawn(move || {
        for line in out.lines().map_while(Result::ok) {
            if line.starts_with("twin serving at ") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(120))
        .expect("twin serve came up");
    Twin { child, kubeconfig }
}

/// The bearer token of the kubeconfig's first user.
fn token_of(kubeconfig: &Path) -> String {
    let kc: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(kubeconfig).unwrap()).unwrap();
    kc["users"][0]["user"]["token"]
        .as_str()
        .expect("the twin's kubeconfig holds a token")
        .to_owned()
}

/// Faults on a cluster target need the opt-in ConfigMap.
fn opt_in(kubeconfig: &Path) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        use k8s_openapi::api::core::v1::ConfigMap;
        use kube::api::{Api, PostParams};
        let kc = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        let client = kube::Client::try_from(cfg).unwrap();
        let cm: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "stormdrill-allow", "namespace": "kube-system"},
            "data": {"namespaces": "*", "faults": "*"},
        }))
        .unwrap();
        Api::<ConfigMap>::namespaced(client, "kube-system")
            .create(&PostParams::default(), &cm)
            .await
            .unwrap();
    });
}

fn run(twin: &Twin, config: &Path, reports: &Path, secret: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stormdrill"));
    cmd.current_dir(manifest())
        .args(["run", "--target", "cluster", "--allow-destructive"])
        .arg("--kubeconfig")
        .arg(&twin.kubeconfig)
        .arg("--target-config")
        .arg(config)
        .arg("--report-dir")
        .arg(reports)
        .arg(manifest().join("tests/fixtures/secrets/power.feature"))
        // Debug logs too: a secret must not be in them either.
        .env("RUST_LOG", "debug")
        .env_remove(SECRET_VAR);
    if let Some(s) = secret {
        cmd.env(SECRET_VAR, s);
    }
    cmd.output().unwrap()
}

/// Where `needle` occurs: `stdout`, `stderr` or a file's path under `dir`.
fn occurrences(needle: &str, out: &Output, dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for (name, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        if String::from_utf8_lossy(bytes).contains(needle) {
            found.push(name.to_owned());
        }
    }
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if String::from_utf8_lossy(&std::fs::read(&path).unwrap()).contains(needle) {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

#[test]
fn the_token_and_a_configs_password_stay_out_of_logs_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let twin = serve(dir.path());
    let token = token_of(&twin.kubeconfig);
    opt_in(&twin.kubeconfig);
    // The command proves it got the password by writing it outside the run's folder.
    let proof = dir.path().join("proof");
    let config = dir.path().join("cluster.yaml");
    std::fs::write(
        &config,
        format!(
            "power:\n  off: printf '%s' \"${{{SECRET_VAR}}}\" > {}\n  on: \"true\"\n",
            proof.display()
        ),
    )
    .unwrap();
    let secret = "pw-7c1e0b9f-not-in-any-report";
    let reports = dir.path().join("reports");
    let out = run(&twin, &config, &reports, Some(secret));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(std::fs::read_to_string(&proof).unwrap(), secret);
    let run_dir = std::fs::read_dir(&reports)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let journal = std::fs::read_to_string(run_dir.join("journal.jsonl")).unwrap();
    assert!(
        journal.contains(&format!("${{{SECRET_VAR}}}")),
        "the journal records the command as written: {journal}"
    );
    for (what, needle) in [("token", token.as_str()), ("password", secret)] {
        let found = occurrences(needle, &out, &reports);
        assert!(found.is_empty(), "the {what} is in {found:?}");
    }

    // The search finds what is there: the same run's folder with the secret planted.
    std::fs::write(run_dir.join("planted.txt"), format!("x{secret}x")).unwrap();
    assert_eq!(occurrences(secret, &out, &reports).len(), 1);

    // Unset, the variable is named with its file, and nothing is powered off.
    std::fs::remove_file(&proof).unwrap();
    let out = run(&twin, &config, &dir.path().join("reports-unset"), None);
    // The failed step's message is on stdout, with the steps.
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains(&format!(
            "power command in {} uses ${{{SECRET_VAR}}}, which is not set",
            config.display()
        )),
        "{text}"
    );
    assert!(!proof.exists(), "the command ran without its variable");
    // The token stays out of a failed run too.
    assert!(occurrences(&token, &out, &dir.path().join("reports-unset")).is_empty());
}
