//! Timing profiles: every delay the twin's simulated cluster waits, in one place.
//! `fast` keeps tests and demos in seconds; `realistic` uses Kubernetes' defaults.
//! No hidden time scaling: a profile changes delays, nothing else.

use std::time::Duration;

use rand::Rng;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timing {
    pub name: &'static str,
    /// Controllers' resync period (they also react to every change at once).
    pub resync: Duration,
    /// Image pull + container create, as a [min, max] range with seeded jitter.
    pub container_start: (Duration, Duration),
    /// From container start to passing its readiness probe.
    pub readiness: (Duration, Duration),
    /// Back-off before the kubelet restarts a killed container.
    pub restart_backoff: Duration,
    /// How long a container takes to stop after SIGTERM (capped by the grace period).
    pub termination: Duration,
    /// Kubelet's node status/Lease renewal (upstream: 10 s).
    pub node_heartbeat: Duration,
    /// kube-controller-manager --node-monitor-grace-period (upstream: 40 s).
    pub node_monitor_grace: Duration,
    /// DefaultTolerationSeconds for not-ready/unreachable NoExecute taints (upstream: 300 s).
    pub default_toleration: Duration,
    /// Dynamic provisioning of a PersistentVolume.
    pub provision: Duration,
    /// A node's boot time after power on, before its kubelet posts Ready.
    pub node_boot: Duration,
    /// Velero: fixed cost of a backup or restore, plus a cost per item.
    pub backup_base: Duration,
    pub backup_per_item: Duration,
}

impl Timing {
    pub fn fast() -> Timing {
        Timing {
            name: "fast",
            resync: Duration::from_millis(100),
            container_start: (Duration::from_millis(50), Duration::from_millis(150)),
            readiness: (Duration::from_millis(50), Duration::from_millis(150)),
            restart_backoff: Duration::from_millis(200),
            termination: Duration::from_millis(100),
            node_heartbeat: Duration::from_millis(200),
            node_monitor_grace: Duration::from_secs(1),
            default_toleration: Duration::from_secs(2),
            provision: Duration::from_millis(100),
            node_boot: Duration::from_millis(300),
            backup_base: Duration::from_millis(300),
            backup_per_item: Duration::from_millis(2),
        }
    }

    pub fn realistic() -> Timing {
        Timing {
            name: "realistic",
            resync: Duration::from_secs(1),
            container_start: (Duration::from_secs(2), Duration::from_secs(8)),
            readiness: (Duration::from_secs(1), Duration::from_secs(10)),
            restart_backoff: Duration::from_secs(10),
            termination: Duration::from_secs(2),
            node_heartbeat: Duration::from_secs(10),
            node_monitor_grace: Duration::from_secs(40),
            default_toleration: Duration::from_secs(300),
            provision: Duration::from_secs(3),
            node_boot: Duration::from_secs(30),
            backup_base: Duration::from_secs(10),
            backup_per_item: Duration::from_millis(50),
        }
    }

    pub fn by_name(name: &str) -> Option<Timing> {
        match name {
            "fast" => Some(Timing::fast()),
            "realistic" => Some(Timing::realistic()),
            _ => None,
        }
    }

    /// A delay drawn uniformly from a range with the twin's seeded RNG.
    pub fn jitter(range: (Duration, Duration), rng: &mut impl Rng) -> Duration {
        let (lo, hi) = (range.0.as_micros() as u64, range.1.as_micros() as u64);
        if hi <= lo {
            return range.0;
        }
        Duration::from_micros(rng.random_range(lo..=hi))
    }
}

impl Default for Timing {
    fn default() -> Self {
        Timing::fast()
    }
}
