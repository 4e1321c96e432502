//! Simulated containers: what a command run in a container (exec) answers, what an
//! HTTP port of a pod serves (reached through the service proxy), and what
//! containers logged. The stack registers handlers per container image.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Log lines kept per container (oldest dropped first).
const LOG_CAP: usize = 10_000;

#[derive(Default)]
pub struct Sim {
    logs: Mutex<HashMap<(String, String, String), VecDeque<(String, String)>>>,
}

impl Sim {
    /// Appends a log line (with its RFC 3339 timestamp) for a container.
    pub fn log(&self, namespace: &str, pod: &str, container: &str, line: &str) {
        let mut logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        let q = logs
            .entry((
                namespace.to_string(),
                pod.to_string(),
                container.to_string(),
            ))
            .or_default();
        q.push_back((
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            line.to_string(),
        ));
        while q.len() > LOG_CAP {
            q.pop_front();
        }
    }

    /// A container's log lines as (timestamp, line).
    pub fn logs(&self, namespace: &str, pod: &str, container: &str) -> Vec<(String, String)> {
        let logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        logs.get(&(
            namespace.to_string(),
            pod.to_string(),
            container.to_string(),
        ))
        .map(|q| q.iter().cloned().collect())
        .unwrap_or_default()
    }

    /// Forgets a pod's logs (the pod object is gone).
    pub fn forget_pod(&self, namespace: &str, pod: &str) {
        let mut logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        logs.retain(|(ns, p, _), _| !(ns == namespace && p == pod));
    }
}
