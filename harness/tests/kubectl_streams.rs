//! Unmodified kubectl's streaming commands against `stormdrill twin serve`:
//! `port-forward` (SPDY tunnelled in a WebSocket, and the direct SPDY fallback) to a
//! pod's simulated HTTP port and its errors, and `kubectl cp` both ways (text and a
//! 100 KiB binary file, a directory) through exec's WebSocket stdin/stdout. Runs
//! with the kubectl on PATH and, when present, the v1.37.2 one built by
//! scripts/k8s-setup.sh.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::kubectl::{kubectl, kubectl_bin, ok, serve};
use common::streams::{binary, forward_to_closed_port, http_get, Forward};

const KUBECTL_137: &str = "/root/.cache/stormdrill/k8s/v1.37.2-etcd-v3.6.16/bin/kubectl";

/// A Deployment whose image serves HTTP in the twin without the stack: Grafana's
/// `/api/health` on 3000 (`twin/src/stack/observability.rs`).
const GRAFANA: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: graf, namespace: default}\nspec:\n  replicas: 1\n  selector: {matchLabels: {app: graf}}\n  template:\n    metadata: {labels: {app: graf}}\n    spec:\n      containers:\n      - name: grafana\n        image: grafana/grafana:11.2.0\n        ports: [{containerPort: 3000}]\n";

/// The kubectl binaries to drive: PATH's, and v1.37.2 when it is there.
fn kubectls() -> Vec<PathBuf> {
    let mut bins = vec![PathBuf::from("kubectl")];
    if Path::new(KUBECTL_137).exists() {
        bins.push(PathBuf::from(KUBECTL_137));
    } else {
        println!("v1.37.2 kubectl not found at {KUBECTL_137}: only PATH's kubectl runs");
    }
    bins
}

fn run(bin: &Path, kc: &Path, args: &[&str]) -> String {
    let (success, stdout, stderr) = kubectl_bin(bin, kc, args);
    assert!(
        success,
        "{} {args:?} failed:\nstdout: {stdout}\nstderr: {stderr}",
        bin.display()
    );
    stdout
}

/// The `-v=6` log line of the port-forward upgrade.
fn upgrade_line(stderr: &str) -> String {
    stderr
        .lines()
        .find(|l| l.contains("/portforward") && l.contains("101 Switching Protocols"))
        .unwrap_or_else(|| panic!("no 101 for /portforward in the log:\n{stderr}"))
        .to_string()
}

fn check_port_forward(bin: &Path, kc: &Path, pod: &str) {
    // kubectl >= 1.31 tunnels SPDY in a WebSocket (a GET upgrade) ...
    let t = Instant::now();
    let f = Forward::start(bin, kc, &[&format!("pod/{pod}")], 3000, &[]);
    let answer = http_get(f.port, "/api/health");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains("\"database\":\"ok\"") && answer.contains("\"version\":\"11.2.0\""),
        "{answer}"
    );
    // A second connection over the same session.
    assert!(http_get(f.port, "/api/health").starts_with("HTTP/1.1 200"));
    let line = upgrade_line(&f.stderr());
    assert!(line.contains("GET"), "a WebSocket upgrade is a GET: {line}");
    drop(f);
    println!(
        "{}: port-forward over WebSocket, two requests in {:?}",
        bin.display(),
        t.elapsed()
    );

    // ... and falls back to (here: is told to use) a direct SPDY upgrade, a POST.
    let f = Forward::start(
        bin,
        kc,
        &[&format!("pod/{pod}")],
        3000,
        &[("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")],
    );
    let answer = http_get(f.port, "/api/health");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let line = upgrade_line(&f.stderr());
    assert!(line.contains("POST"), "a SPDY upgrade is a POST: {line}");
    drop(f);

    // Nothing listens on 3999: the connection closes unanswered, kubectl reports the
    // error from the session's error stream and exits instead of hanging.
    let t = Instant::now();
    let stderr = forward_to_closed_port(bin, kc, &[&format!("pod/{pod}")], 3999);
    assert!(stderr.contains("lost connection to pod"), "{stderr}");
    println!(
        "{}: port-forward to a closed port failed in {:?}",
        bin.display(),
        t.elapsed()
    );
}

fn check_cp(bin: &Path, kc: &Path, pod: &str, dir: &Path, tag: &str) {
    let t = Instant::now();
    let note = dir.join("note.txt");
    std::fs::write(&note, format!("copied in by {tag}\n")).unwrap();
    let blob = binary(100 * 1024);
    let blob_path = dir.join("blob.bin");
    std::fs::write(&blob_path, &blob).unwrap();

    // Into the pod: a file to a file name, a file into a directory (kubectl asks
    // `test -d` first), then cat reads the first back.
    let remote = format!("/tmp/{tag}");
    run(bin, kc, &["exec", pod, "--", "mkdir", "-p", &remote]);
    run(
        bin,
        kc,
        &[
            "cp",
            note.to_str().unwrap(),
            &format!("{pod}:{remote}/renamed.txt"),
        ],
    );
    run(
        bin,
        kc,
        &[
            "cp",
            blob_path.to_str().unwrap(),
            &format!("{pod}:{remote}/"),
        ],
    );
    let cat = run(
        bin,
        kc,
        &["exec", pod, "--", "cat", &format!("{remote}/renamed.txt")],
    );
    assert_eq!(cat, format!("copied in by {tag}\n"));
    let ls = run(bin, kc, &["exec", pod, "--", "ls", "-l", &remote]);
    assert!(ls.contains(" 102400 ") && ls.contains("blob.bin"), "{ls}");

    // Out of the pod: the binary file byte for byte, then the whole directory.
    let out = dir.join(format!("out-{tag}"));
    std::fs::create_dir_all(&out).unwrap();
    let back = out.join("blob.bin");
    run(
        bin,
        kc,
        &[
            "cp",
            &format!("{pod}:{remote}/blob.bin"),
            back.to_str().unwrap(),
        ],
    );
    assert!(
        std::fs::read(&back).unwrap() == blob,
        "the 100 KiB binary file came back different"
    );
    let tree = out.join("tree");
    run(
        bin,
        kc,
        &["cp", &format!("{pod}:{remote}"), tree.to_str().unwrap()],
    );
    assert!(std::fs::read(tree.join("blob.bin")).unwrap() == blob);
    assert_eq!(
        std::fs::read_to_string(tree.join("renamed.txt")).unwrap(),
        format!("copied in by {tag}\n")
    );

    // Into a directory that does not exist: tar's error, and kubectl fails.
    let (copied, stdout, stderr) = kubectl_bin(
        bin,
        kc,
        &[
            "cp",
            note.to_str().unwrap(),
            &format!("{pod}:/no/such/dir/x"),
        ],
    );
    assert!(!copied, "{stdout}{stderr}");
    assert!(
        format!("{stdout}{stderr}")
            .contains("/no/such/dir: Cannot open: No such file or directory"),
        "{stdout}{stderr}"
    );
    println!("{}: kubectl cp checks in {:?}", bin.display(), t.elapsed());
}

/// The Grafana Deployment's pod, once rolled out.
fn graf_pod(kc: &Path) -> String {
    ok(
        kc,
        &["rollout", "status", "deployment/graf", "--timeout=60s"],
    );
    ok(
        kc,
        &[
            "get",
            "pods",
            "-l",
            "app=graf",
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ],
    )
}

#[test]
fn kubectl_port_forward_and_cp() {
    let s = serve();
    let kc = s.kubeconfig.as_path();
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("graf.yaml");
    std::fs::write(&manifest, GRAFANA).unwrap();
    ok(kc, &["apply", "-f", manifest.to_str().unwrap()]);
    let pod = graf_pod(kc);
    assert!(pod.starts_with("graf-"), "{pod}");

    for (i, bin) in kubectls().iter().enumerate() {
        check_port_forward(bin, kc, &pod);
        check_cp(bin, kc, &pod, dir.path(), &format!("v{i}"));
    }

    // tar of a path that does not exist: GNU tar's messages and exit code 2.
    let (found, _, err) = kubectl(kc, &["exec", &pod, "--", "tar", "cf", "-", "/nope"]);
    assert!(!found, "{err}");
    assert!(
        err.contains("tar: /nope: Cannot stat: No such file or directory")
            && err.contains("exit code 2"),
        "{err}"
    );

    // The files were the pod's: its replacement starts without them.
    ok(kc, &["delete", "pod", &pod, "--wait=true", "--timeout=30s"]);
    let new_pod = graf_pod(kc);
    assert_ne!(new_pod, pod);
    let (found, _, err) = kubectl(kc, &["exec", &new_pod, "--", "cat", "/tmp/v0/renamed.txt"]);
    assert!(
        !found && err.contains("No such file or directory"),
        "a new pod has new files: {err}"
    );

    // The pod's node powered off: the API server cannot dial its kubelet, and
    // port-forward fails at once (the pod still shows Running for a while).
    let node = ok(
        kc,
        &["get", "pod", &new_pod, "-o", "jsonpath={.spec.nodeName}"],
    );
    let off = dir.path().join("off.json");
    std::fs::write(&off, r#"{"state":"off"}"#).unwrap();
    ok(
        kc,
        &[
            "create",
            "--raw",
            &format!("/twin/v1/nodes/{node}/power"),
            "-f",
            off.to_str().unwrap(),
        ],
    );
    let t = Instant::now();
    let mut f = Forward::spawn(
        Path::new("kubectl"),
        kc,
        &[&format!("pod/{new_pod}")],
        3000,
        &[],
    );
    let exited = f.exited_within(Duration::from_secs(20));
    let err = f.stderr();
    assert_eq!(
        exited,
        Some(false),
        "port-forward must fail, not hang:\n{err}"
    );
    println!(
        "port-forward to a pod on a powered-off node failed in {:?}",
        t.elapsed()
    );
    assert!(
        err.contains("error dialing backend") && err.contains("no route to host"),
        "{err}"
    );
}
