//! Ground truth: every state change the twin itself makes (a pod turning Ready, a
//! node losing power, ...), with monotonic and wall-clock timestamps, so tests and
//! benchmarks can measure how late the harness noticed. The harness's verdict logic
//! never reads it. Served at `GET /twin/v1/events?since=SEQ`.

use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TruthEvent {
    /// Increasing sequence number (for `since`).
    pub seq: u64,
    /// Microseconds since the twin started (monotonic clock).
    pub mono_us: u64,
    /// Wall-clock time, RFC 3339 with microseconds.
    pub wall: String,
    /// What changed: `pod`, `node`, `ceph`, ...
    pub kind: String,
    /// Which object: `namespace/name` or `name`.
    pub object: String,
    /// The new state, e.g. `Ready`, `NotReady`, `PoweredOff`.
    pub state: String,
}

pub struct Truth {
    start: Instant,
    events: Mutex<Vec<TruthEvent>>,
}

impl Default for Truth {
    fn default() -> Self {
        Truth {
            start: Instant::now(),
            events: Mutex::new(Vec::new()),
        }
    }
}

impl Truth {
    pub fn record(&self, kind: &str, object: &str, state: &str) {
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        let seq = events.len() as u64 + 1;
        events.push(TruthEvent {
            seq,
            mono_us: self.start.elapsed().as_micros() as u64,
            wall: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            kind: kind.to_string(),
            object: object.to_string(),
            state: state.to_string(),
        });
    }

    /// Events with a sequence number above `since`.
    pub fn since(&self, since: u64) -> Vec<TruthEvent> {
        let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        events.iter().filter(|e| e.seq > since).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_ordered_and_filtered() {
        let t = Truth::default();
        t.record("pod", "ns/a", "Ready");
        t.record("node", "dirqual1", "NotReady");
        let all = t.since(0);
        assert_eq!(all.len(), 2);
        assert!(all[0].mono_us <= all[1].mono_us);
        assert_eq!(t.since(1)[0].object, "dirqual1");
    }
}
