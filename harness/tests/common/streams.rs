//! Helpers for tests of kubectl's streaming commands: `kubectl port-forward` as a
//! child process, HTTP/1.1 through it, and bytes for `kubectl cp`. Also included by
//! `twin/tests/control_plane_real.rs` with `#[path]`, so it uses std only.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// A running `kubectl port-forward`, killed on drop.
pub struct Forward {
    pub child: Child,
    /// The local port kubectl listens on.
    pub port: u16,
    stderr: Arc<Mutex<String>>,
    stderr_reader: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Forward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Forward {
    /// Starts `kubectl port-forward TARGET... 0:REMOTE -v=6` (`target` e.g.
    /// `["-n", "ns", "pod/x"]`) with `env` added, and waits (20 s at most) for the
    /// local port it prints; `port` is 0 when it printed none.
    pub fn spawn(
        bin: &Path,
        kc: &Path,
        target: &[&str],
        remote: u16,
        env: &[(&str, &str)],
    ) -> Forward {
        let mut child = Command::new(bin)
            .arg("--kubeconfig")
            .arg(kc)
            .arg("port-forward")
            .args(target)
            .args([&format!("0:{remote}"), "-v=6"])
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl port-forward starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (err_pipe, sink) = (child.stderr.take().unwrap(), stderr.clone());
        let stderr_reader = std::thread::spawn(move || {
            for line in BufReader::new(err_pipe).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let want = format!(" -> {remote}");
        let mut f = Forward {
            child,
            port: 0,
            stderr,
            stderr_reader: Some(stderr_reader),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        // Stops at "Forwarding from 127.0.0.1:NNNN -> REMOTE", or when kubectl exits
        // without one (then stdout closes) or takes too long.
        while let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            if let Some(port) = line
                .strip_prefix("Forwarding from 127.0.0.1:")
                .and_then(|rest| rest.strip_suffix(&want))
            {
                f.port = port.parse().expect("a port number");
                break;
            }
        }
        // Keep draining stdout ("Handling connection for ...") so kubectl never blocks.
        std::thread::spawn(move || while rx.recv().is_ok() {});
        f
    }

    /// [`Forward::spawn`], and the local port within 20 s, or the test fails.
    pub fn start(
        bin: &Path,
        kc: &Path,
        target: &[&str],
        remote: u16,
        env: &[(&str, &str)],
    ) -> Forward {
        let f = Forward::spawn(bin, kc, target, remote, env);
        assert!(
            f.port != 0,
            "no \"Forwarding from 127.0.0.1:PORT -> {remote}\" within 20 s:\n{}",
            f.stderr()
        );
        f
    }

    /// What kubectl logged so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits (bounded) for kubectl to exit; its success, or None if still running.
    pub fn exited_within(&mut self, limit: Duration) -> Option<bool> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Everything it wrote is read once its stderr closes.
                if let Some(r) = self.stderr_reader.take() {
                    let _ = r.join();
                }
                return Some(status.success());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        None
    }
}

/// Port-forwards to `remote` of `target`, where nothing listens: the connection
/// closes unanswered, and kubectl reports the session's error and exits with an
/// error within 15 s instead of hanging. Returns what it logged.
pub fn forward_to_closed_port(bin: &Path, kc: &Path, target: &[&str], remote: u16) -> String {
    let mut f = Forward::start(bin, kc, target, remote, &[]);
    let answer = http_get(f.port, "/");
    assert!(answer.is_empty(), "nothing listens on {remote}: {answer}");
    let exited = f.exited_within(Duration::from_secs(15));
    let stderr = f.stderr();
    assert_eq!(
        exited,
        Some(false),
        "kubectl must fail, not hang:\n{stderr}"
    );
    assert!(
        stderr.contains(&format!("error forwarding port {remote}"))
            && stderr.contains("connection refused"),
        "{stderr}"
    );
    stderr
}

/// `GET path` to 127.0.0.1:port; the raw answer (status line, headers, body), or
/// what was read before the connection closed or 10 s passed.
pub fn http_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("the local port accepts");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// `len` bytes of every value in no repeating pattern (xorshift32), so a copy that
/// mangles binary data (a text conversion, a dropped or repeated chunk) shows.
pub fn binary(len: usize) -> Vec<u8> {
    let mut x: u32 = 0x2545_f491;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}
