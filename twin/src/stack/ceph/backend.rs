//! The seam between the twin's Kubernetes side (Rook operator, API data plane, mgr
//! metrics service, defects) and the Ceph cluster behind it. Two backends:
//! [`SimulatedCeph`] (the pure [`CephModel`], default, no system packages) and
//! [`super::real::RealCeph`] (a real Ceph cluster of local processes on 127.0.0.1).
//! Callers speak in Kubernetes terms (an OSD pod runs or not, a pool is wanted with
//! this size); each backend turns that into model calls or process signals.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

use super::{run_ceph_command, CephModel, CephParams, DeviceClass};
use crate::sim::{ExecOutput, HttpRequest, HttpResponse};

/// Which Ceph the twin runs (`--ceph`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CephBackendKind {
    /// The simulated model: deterministic, seeded, no system packages.
    #[default]
    Simulated,
    /// A real Ceph cluster bootstrapped from the Debian packages in a scratch folder.
    Real,
}

impl CephBackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CephBackendKind::Simulated => "simulated",
            CephBackendKind::Real => "real",
        }
    }

    pub fn parse(s: &str) -> Option<CephBackendKind> {
        match s {
            "simulated" => Some(CephBackendKind::Simulated),
            "real" => Some(CephBackendKind::Real),
            _ => None,
        }
    }
}

/// One OSD of the CephCluster's storage spec (ids in spec order, as Rook assigns them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OsdSpec {
    pub id: i32,
    pub host: String,
    pub class: DeviceClass,
}

/// A replicated pool the stack asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolSpec {
    pub name: String,
    pub size: u32,
    pub min_size: u32,
    pub pg_num: u32,
    pub class: Option<DeviceClass>,
    /// `ceph osd pool application enable` name (rbd, rgw, mgr).
    pub application: String,
}

/// What the OSD's pod says about its process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OsdWant {
    /// The pod is Running on a live node: the process runs.
    Running,
    /// The pod is gone or its container stopped. `graceful`: its Deployment was scaled
    /// to 0 (SIGTERM, the OSD tells the monitor it goes down); otherwise the container
    /// was killed or deleted (SIGKILL).
    Stopped { graceful: bool },
    /// The pod's node lost power: the process vanished without a word, noticed only
    /// through missed heartbeats.
    Unreachable,
}

/// A pool's CephBlockPool phase.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PoolPhase {
    Ready,
    Progressing,
    Failure(String),
}

/// Ceph's own view, for CephCluster `status.ceph`.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterView {
    pub health: String,
    /// check name -> {message, severity}
    pub checks: BTreeMap<String, Value>,
    /// bytesTotal/bytesUsed/bytesAvailable
    pub capacity: Value,
    pub fsid: String,
    /// e.g. `18.2.4-0`, as Rook reports it.
    pub version: String,
}

impl ClusterView {
    /// From `ceph status -f json` (real or modelled: the shapes are the same).
    pub fn from_status(status: &Value, version: &str) -> ClusterView {
        let checks = status
            .pointer("/health/checks")
            .and_then(Value::as_object)
            .map(|cs| {
                cs.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            json!({"message": v.pointer("/summary/message"), "severity": v["severity"]}),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let at = |p: &str| status.pointer(p).cloned().unwrap_or(json!(0));
        ClusterView {
            health: status
                .pointer("/health/status")
                .and_then(Value::as_str)
                .unwrap_or("HEALTH_ERR")
                .to_string(),
            checks,
            capacity: json!({"bytesTotal": at("/pgmap/bytes_total"), "bytesUsed": at("/pgmap/bytes_used"), "bytesAvailable": at("/pgmap/bytes_avail")}),
            fsid: status["fsid"].as_str().unwrap_or("").to_string(),
            version: version.to_string(),
        }
    }
}

/// What the API data plane needs to know about a pool's I/O.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolIo {
    /// Some of the pool's I/O blocks now (inactive PGs, pause flags).
    pub blocked: bool,
    /// The cluster has degraded objects (I/O is slower while it recovers).
    pub degraded: bool,
}

/// Everything the twin asks of Ceph. Methods never block for long (the real backend
/// answers from a cache and acts in its own threads), except `exec` and `metrics`,
/// which the twin calls from blocking threads.
pub trait CephBackend: Send + Sync {
    fn kind(&self) -> CephBackendKind;
    /// Creates the cluster with these OSDs once (later calls are no-ops).
    fn ensure_cluster(&self, osds: &[OsdSpec], now: Duration);
    /// A CephBlockPool: created, resized to spec, and seeded with some data.
    fn ensure_block_pool(&self, spec: &PoolSpec, now: Duration) -> PoolPhase;
    /// An object store's data pool: created when missing.
    fn ensure_object_pool(&self, spec: &PoolSpec, now: Duration);
    /// Follows an OSD pod; true when this changed whether the process runs.
    /// `incarnation` names the running container (pod uid and restart count): a new
    /// one means the old process was killed and a new one starts, even if the change
    /// from one pod to the next was never seen as a stop.
    fn set_osd(&self, id: i32, want: OsdWant, incarnation: &str, now: Duration) -> bool;
    /// OSDs whose process died on its own since the last call (the kubelet should see
    /// a crashed container).
    fn take_crashed_osds(&self) -> Vec<i32> {
        Vec::new()
    }
    /// `ceph ...` (and, for the real backend, `rados ...`) run in the toolbox.
    fn exec(&self, argv: &[String], stdin: Option<&[u8]>, now: Duration) -> ExecOutput;
    /// The mgr's Prometheus endpoint (`:9283/metrics`).
    fn metrics(&self, req: &HttpRequest, now: Duration) -> HttpResponse;
    /// Ceph's status; None before the cluster exists (or answers).
    fn cluster_view(&self, now: Duration) -> Option<ClusterView>;
    /// Whether the RBD provisioner can create a volume in `pool` now.
    fn provision_check(&self, pool: &str, now: Duration) -> Result<(), String>;
    /// None when there is no cluster (yet).
    fn pool_io(&self, pool: &str) -> Option<PoolIo>;
    /// `ceph osd set FLAG`; true once applied (or queued, for the real backend).
    fn set_flag(&self, flag: &str, now: Duration) -> bool;
    /// Makes recovery `factor` times slower; true once applied.
    fn slow_recovery(&self, factor: f64) -> bool;
    /// Stops everything the backend started (idempotent; blocks until done).
    fn shutdown(&self) {}
    /// Live processes the backend started (name, PID); empty for the model.
    fn pids(&self) -> Vec<(String, u32)> {
        Vec::new()
    }
    /// The mgr's Prometheus exporter as `127.0.0.1:PORT`, for a real Prometheus to
    /// scrape (None for the model, which is only reachable through the service proxy).
    fn exporter_addr(&self) -> Option<String> {
        None
    }
    /// Milestones since the backend started (bootstrap steps), for reports and benches.
    fn timeline(&self) -> Vec<(Duration, String)> {
        Vec::new()
    }
}

/// Rook's default min_size for a replicated pool: size - size/2.
pub fn default_min_size(size: u32) -> u32 {
    (size - size / 2).max(1)
}

/// Some data in each block pool (the volumes' blocks), written once the pool is
/// active (writes to peering PGs are refused, as by Ceph).
const SEED_OBJECTS: u64 = 2_000;

/// The simulated backend: today's [`CephModel`], unchanged.
pub struct SimulatedCeph {
    /// Shared with `Ctx::ceph`, which tests read directly.
    model: Arc<Mutex<Option<CephModel>>>,
    seed: u64,
    params: CephParams,
    seeded: Mutex<HashSet<String>>,
}

impl SimulatedCeph {
    pub fn new(model: Arc<Mutex<Option<CephModel>>>, seed: u64, params: CephParams) -> Self {
        SimulatedCeph {
            model,
            seed,
            params,
            seeded: Mutex::new(HashSet::new()),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut CephModel) -> T) -> Option<T> {
        let mut guard = self.model.lock().unwrap_or_else(|e| e.into_inner());
        guard.as_mut().map(f)
    }
}

impl CephBackend for SimulatedCeph {
    fn kind(&self) -> CephBackendKind {
        CephBackendKind::Simulated
    }

    fn ensure_cluster(&self, osds: &[OsdSpec], now: Duration) {
        let mut guard = self.model.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_some() {
            return;
        }
        let mut m = CephModel::new(self.seed, self.params.clone());
        m.set_wall_clock_origin(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0)
                - now.as_secs_f64(),
        );
        for osd in osds {
            let size = if osd.class == DeviceClass::Nvme {
                1u64 << 40
            } else {
                4u64 << 40
            };
            let _ = m.add_osd(osd.id, &osd.host, osd.class, size, now);
        }
        let mut hosts: Vec<&str> = osds.iter().map(|o| o.host.as_str()).collect();
        hosts.dedup();
        let mgr_size = (hosts.len() as u32).clamp(1, 3);
        let _ = m.create_pool(
            ".mgr",
            mgr_size,
            default_min_size(mgr_size),
            1,
            None,
            "mgr",
            now,
        );
        *guard = Some(m);
    }

    fn ensure_block_pool(&self, spec: &PoolSpec, now: Duration) -> PoolPhase {
        let name = &spec.name;
        let mut seeded = self.seeded.lock().unwrap_or_else(|e| e.into_inner());
        let result = self.with(|m| {
            match m.pool_by_name(name).map(|p| (p.size, p.min_size)) {
                None => m
                    .create_pool(
                        name,
                        spec.size,
                        spec.min_size,
                        spec.pg_num,
                        spec.class,
                        &spec.application,
                        now,
                    )
                    .map(|_| ()),
                Some((s, ms)) if s != spec.size || ms != spec.min_size => m
                    .set_pool_size(name, spec.size, now)
                    .and_then(|_| m.set_pool_min_size(name, spec.min_size, now)),
                Some(_) => Ok(()),
            }
            .and_then(|_| {
                if !seeded.contains(name)
                    && m.pool_active(name)
                    && m.write_objects(name, SEED_OBJECTS, 4 << 20, now)? > 0
                {
                    seeded.insert(name.clone());
                }
                Ok(())
            })
        });
        match result {
            None => PoolPhase::Progressing,
            Some(Ok(())) => PoolPhase::Ready,
            Some(Err(e)) => PoolPhase::Failure(e.to_string()),
        }
    }

    fn ensure_object_pool(&self, spec: &PoolSpec, now: Duration) {
        self.with(|m| {
            if m.pool_by_name(&spec.name).is_none() {
                let _ = m.create_pool(
                    &spec.name,
                    spec.size,
                    spec.min_size,
                    spec.pg_num,
                    spec.class,
                    &spec.application,
                    now,
                );
            }
        });
    }

    fn set_osd(&self, id: i32, want: OsdWant, _incarnation: &str, now: Duration) -> bool {
        self.with(|m| {
            let running = want == OsdWant::Running;
            let Some(osd) = m.osd(id) else { return false };
            if osd.is_running() == running {
                return false;
            }
            let res = match want {
                OsdWant::Unreachable => m.set_osd_unreachable(id, now),
                _ => m.set_osd_running(id, running, now),
            };
            res.is_ok()
        })
        .unwrap_or(false)
    }

    fn exec(&self, argv: &[String], _stdin: Option<&[u8]>, now: Duration) -> ExecOutput {
        if argv.first().map(String::as_str) != Some("ceph") {
            return ExecOutput::not_found(argv.first().map(String::as_str).unwrap_or(""));
        }
        self.with(|m| {
            let (out, err, code) = run_ceph_command(m, &argv[1..], now);
            ExecOutput {
                stdout: out.into_bytes(),
                stderr: err.into_bytes(),
                exit_code: code,
            }
        })
        .unwrap_or_else(|| {
            ExecOutput::fail(
                1,
                "[errno 2] RADOS object not found (error connecting to the cluster)\n",
            )
        })
    }

    fn metrics(&self, req: &HttpRequest, now: Duration) -> HttpResponse {
        if !req.path.starts_with("/metrics") {
            return HttpResponse::text(404, "Not Found");
        }
        self.with(|m| {
            m.advance(now);
            let mut r = HttpResponse::text(200, m.prometheus_metrics());
            r.headers = vec![("content-type".into(), "text/plain; version=0.0.4".into())];
            r
        })
        .unwrap_or_else(|| HttpResponse::text(503, "no cluster"))
    }

    fn cluster_view(&self, now: Duration) -> Option<ClusterView> {
        self.with(|m| {
            m.advance(now);
            let mut view = ClusterView::from_status(&m.status_json(), "18.2.4-0");
            view.health = m.health_status().as_str().to_string();
            view.fsid = m.fsid().to_string();
            view
        })
    }

    fn provision_check(&self, pool: &str, now: Duration) -> Result<(), String> {
        self.with(|m| {
            m.advance(now);
            if m.pool_by_name(pool).is_none() {
                return Err(format!("rpc error: code = NotFound desc = pool not found: pool ({pool}) not found in Ceph cluster"));
            }
            if !m.pool_active(pool) {
                return Err(format!("rpc error: code = DeadlineExceeded desc = context deadline exceeded (pool {pool} has inactive placement groups)"));
            }
            Ok(())
        })
        .unwrap_or_else(|| {
            Err("rpc error: code = Internal desc = failed to connect to the Ceph cluster".into())
        })
    }

    fn pool_io(&self, pool: &str) -> Option<PoolIo> {
        self.with(|m| PoolIo {
            blocked: m.pool_io_blocked(pool),
            degraded: m.degraded_objects().0 > 0,
        })
    }

    fn set_flag(&self, flag: &str, now: Duration) -> bool {
        self.with(|m| m.set_flag(flag, now).is_ok())
            .unwrap_or(false)
    }

    fn slow_recovery(&self, factor: f64) -> bool {
        self.with(|m| m.params.recovery_objects_per_sec /= factor)
            .is_some()
    }
}
