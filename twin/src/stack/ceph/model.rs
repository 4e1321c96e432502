//! The cluster state and its evolution over time.
//!
//! What is modelled, and where it comes from in Ceph:
//! - OSD liveness is two things, as in Ceph: the *process* (driven by the caller, i.e. the
//!   OSD pod) and the monitor's *map* state `up`/`down`, `in`/`out`. A stopped process is
//!   marked down after [`CephParams::osd_stop_mark_down`] (a clean stop sends
//!   `MOSDMarkMeDown`; a killed one is reported at once by its peers, which get connection
//!   refused: the lab saw `OSD_DOWN` within 2 s of a SIGKILL); a vanished host is only
//!   noticed after `osd_heartbeat_grace` (20 s). A started process is marked up once it
//!   has booted.
//! - `mon_osd_down_out_interval` (600 s): a down+in OSD is marked out automatically after
//!   that long, unless `noout` is set, the in-ratio would drop below `mon_osd_min_in_ratio`
//!   (0.75; `OSDMonitor::can_mark_out`), or the whole root is down
//!   (`mon_osd_down_out_subtree_limit`, the timer is then reset). An OSD marked out this way
//!   is marked in again when it boots (`mon_osd_auto_mark_auto_out_in`).
//! - Placement: see `crush.rs`. The *up* set is the CRUSH result minus down OSDs; the
//!   *acting* set is chosen at peering like `PeeringState::choose_acting`: up OSDs with a
//!   complete copy, up OSDs that need only a short log-based recovery, and, when that leaves
//!   the PG short, other live OSDs holding a copy (a `pg_temp`: the PG is `remapped`).
//!   Up OSDs without the data are *backfill* targets; OSDs far behind (more than
//!   `osd_async_recovery_min_cost` objects) recover *asynchronously*, outside the acting
//!   set (Pacific+; the lab's `active+recovery_wait+undersized+degraded+remapped`).
//! - Every change of a PG's up/acting set starts a new interval: the PG is `peering` for
//!   [`CephParams::peering_time`] (jittered ×0.5..1.5 per PG, as peering does not end
//!   everywhere at once), then active (acting ≥ `min_size`) or only `peered` (below it: no
//!   client I/O). A PG none of whose OSDs with data is up is `stale` (the mgr marks PGs
//!   whose primary is down stale: `stale+<last state>`); one whose live OSDs lack the data
//!   while a down OSD has it is `down`.
//! - Recovery and backfill need reservations: a PG recovers only when its primary and
//!   targets each have a free slot out of `osd_max_backfills` (others wait:
//!   `recovery_wait`/`backfill_wait`); recovery goes before backfill, and inactive, then
//!   degraded PGs first. Recovered objects flow at [`CephParams::recovery_objects_per_sec`]
//!   shared by the recovering PGs. `norecover`, `nobackfill`, `norebalance` hold them.
//! - Objects are counted per PG and per OSD copy: degraded = copies missing from the
//!   live up/acting OSDs (`size` copies per object), misplaced = copies that exist but on
//!   OSDs outside the up set, up to what the up set lacks (the lab's osd-out capture:
//!   `active+clean+remapped` with 33 % misplaced and HEALTH_OK).
//! - Writes go to the acting OSDs of active PGs; a write to an inactive PG is refused
//!   (client I/O blocks), which is what [`CephModel::pool_io_blocked`] tells.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::time::Duration;

use super::crush::{self, Bucket, Leaf};
use super::pgstate::*;

/// CRUSH device classes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DeviceClass {
    Hdd,
    Ssd,
    Nvme,
}

impl DeviceClass {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceClass::Hdd => "hdd",
            DeviceClass::Ssd => "ssd",
            DeviceClass::Nvme => "nvme",
        }
    }

    pub fn parse(s: &str) -> Option<DeviceClass> {
        match s {
            "hdd" => Some(DeviceClass::Hdd),
            "ssd" => Some(DeviceClass::Ssd),
            "nvme" => Some(DeviceClass::Nvme),
            _ => None,
        }
    }
}

impl fmt::Display for DeviceClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `ceph health mute` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Mute {
    pub sticky: bool,
    /// The check's summary and count when muted (empty/0 for a sticky mute of a check
    /// that was not raised, as Ceph records it).
    pub summary: String,
    pub count: u64,
    /// Model time the mute expires (`ceph health mute CODE TTL`).
    pub until: Option<Duration>,
}

/// Every delay and rate of the model. Ceph option names where there is one.
#[derive(Clone, Debug, PartialEq)]
pub struct CephParams {
    /// `mon_osd_down_out_interval` (Ceph default 600 s).
    pub mon_osd_down_out_interval: Duration,
    /// From the OSD process stopping (pod deleted/scaled down, or killed) to the monitor
    /// marking it down: clean shutdowns and refused connections are reported at once.
    pub osd_stop_mark_down: Duration,
    /// `osd_heartbeat_grace` (20 s): used when the OSD vanished silently
    /// ([`CephModel::set_osd_unreachable`], e.g. its node lost power).
    pub osd_heartbeat_grace: Duration,
    /// From the OSD process starting to the monitor marking it up (boot, map catch-up).
    pub osd_boot_time: Duration,
    /// How long a PG peers after its up/acting set changed (jittered ×0.5..1.5 per PG).
    pub peering_time: Duration,
    /// Objects recovered/backfilled per second, cluster-wide, shared by recovering PGs.
    pub recovery_objects_per_sec: f64,
    /// `osd_max_backfills`: concurrent recoveries/backfills an OSD takes part in.
    pub osd_max_backfills: u32,
    /// `osd_async_recovery_min_cost` (100): an OSD missing more objects than this recovers
    /// outside the acting set.
    pub osd_async_recovery_min_cost: u64,
    /// `mon_pg_stuck_threshold` (60 s): delayed PG health reports (peering, undersized,
    /// stale, inactive) wait until a PG has been stuck that long.
    pub mon_pg_stuck_threshold: Duration,
    /// `mon_osd_min_in_ratio` (0.75).
    pub mon_osd_min_in_ratio: f64,
    /// `mon_health_max_detail` (50): detail lines kept per health check (+1, as Ceph).
    pub mon_health_max_detail: usize,
    /// Window over which the mgr's rates (client I/O, recovery) are computed
    /// (`mgr_stats_period`, 5 s).
    pub stats_window: Duration,
    /// Space an OSD uses with no data (BlueStore/RocksDB).
    pub osd_overhead_bytes: u64,
}

impl CephParams {
    /// Ceph's defaults and the lab's observations (recovery rate: a small cluster with the
    /// recovery sleep off does several hundred objects/s).
    pub fn realistic() -> CephParams {
        CephParams {
            mon_osd_down_out_interval: Duration::from_secs(600),
            osd_stop_mark_down: Duration::from_secs(1),
            osd_heartbeat_grace: Duration::from_secs(20),
            osd_boot_time: Duration::from_secs(3),
            peering_time: Duration::from_secs(2),
            recovery_objects_per_sec: 300.0,
            osd_max_backfills: 1,
            osd_async_recovery_min_cost: 100,
            mon_pg_stuck_threshold: Duration::from_secs(60),
            mon_osd_min_in_ratio: 0.75,
            mon_health_max_detail: 50,
            stats_window: Duration::from_secs(5),
            osd_overhead_bytes: 256 << 20,
        }
    }

    /// Same behaviour in seconds instead of minutes, for tests and demos.
    pub fn fast() -> CephParams {
        CephParams {
            mon_osd_down_out_interval: Duration::from_secs(10),
            osd_stop_mark_down: Duration::from_millis(200),
            osd_heartbeat_grace: Duration::from_secs(1),
            osd_boot_time: Duration::from_millis(300),
            peering_time: Duration::from_millis(300),
            recovery_objects_per_sec: 5000.0,
            osd_max_backfills: 1,
            osd_async_recovery_min_cost: 100,
            mon_pg_stuck_threshold: Duration::from_secs(5),
            mon_osd_min_in_ratio: 0.75,
            mon_health_max_detail: 50,
            stats_window: Duration::from_secs(2),
            osd_overhead_bytes: 256 << 20,
        }
    }

    /// By the twin's timing profile name (`fast`, `realistic`).
    pub fn by_name(name: &str) -> Option<CephParams> {
        match name {
            "fast" => Some(CephParams::fast()),
            "realistic" => Some(CephParams::realistic()),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CephError {
    #[error("osd.{0} does not exist")]
    NoSuchOsd(i32),
    #[error("osd.{0} already exists")]
    OsdExists(i32),
    #[error("unrecognized pool '{0}'")]
    NoSuchPool(String),
    #[error("pool '{0}' already exists")]
    PoolExists(String),
    #[error("unrecognized flag '{0}'")]
    UnknownFlag(String),
    #[error("{0}")]
    Invalid(String),
}

/// OSD map flags the model honours, in `OSDMap::get_flag_string()` order.
pub(super) const FLAG_NAMES: &[(&str, u32)] = &[
    ("pauserd", PAUSERD),
    ("pausewr", PAUSEWR),
    ("noup", NOUP),
    ("nodown", NODOWN),
    ("noout", NOOUT),
    ("noin", NOIN),
    ("nobackfill", NOBACKFILL),
    ("norebalance", NOREBALANCE),
    ("norecover", NORECOVER),
    ("noscrub", NOSCRUB),
    ("nodeep-scrub", NODEEP_SCRUB),
    ("notieragent", NOTIERAGENT),
    ("nosnaptrim", NOSNAPTRIM),
];
pub(super) const PAUSERD: u32 = 1 << 0;
pub(super) const PAUSEWR: u32 = 1 << 1;
pub(super) const NOUP: u32 = 1 << 2;
pub(super) const NODOWN: u32 = 1 << 3;
pub(super) const NOOUT: u32 = 1 << 4;
pub(super) const NOIN: u32 = 1 << 5;
pub(super) const NOBACKFILL: u32 = 1 << 6;
pub(super) const NOREBALANCE: u32 = 1 << 7;
pub(super) const NORECOVER: u32 = 1 << 8;
pub(super) const NOSCRUB: u32 = 1 << 9;
pub(super) const NODEEP_SCRUB: u32 = 1 << 10;
pub(super) const NOTIERAGENT: u32 = 1 << 11;
pub(super) const NOSNAPTRIM: u32 = 1 << 12;

/// `OSDMap::get_flag_string()` of a set of flags: names joined by `,`.
pub(super) fn flag_string(flags: u32) -> String {
    FLAG_NAMES
        .iter()
        .filter(|(_, b)| flags & b != 0)
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(",")
}

/// The bits `ceph osd set <key>` sets (`pause` is both pause flags).
pub(super) fn flag_bits(name: &str) -> Option<u32> {
    if name == "pause" {
        return Some(PAUSERD | PAUSEWR);
    }
    FLAG_NAMES.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// One OSD: identity, and its process and map state.
#[derive(Clone, Debug)]
pub struct Osd {
    pub id: i32,
    pub host: String,
    pub class: DeviceClass,
    /// CRUSH weight: the device size in TiB, in CRUSH's 16.16 fixed point.
    pub crush_weight: f64,
    pub size_bytes: u64,
    pub(super) running: bool,
    pub(super) up: bool,
    pub(super) in_: bool,
    /// Marked out by the monitor (down-out interval), not by an admin.
    pub(super) auto_out: bool,
    pub(super) mark_down_at: Option<Duration>,
    pub(super) mark_up_at: Option<Duration>,
    pub(super) down_since: Option<Duration>,
    pub(super) ever_stopped: bool,
}

impl Osd {
    pub fn is_up(&self) -> bool {
        self.up
    }
    pub fn is_in(&self) -> bool {
        self.in_
    }
    /// The process (pod) state the caller set.
    pub fn is_running(&self) -> bool {
        self.running
    }
    /// The OSD map's reweight: 1 when in, 0 when out.
    pub fn reweight(&self) -> f64 {
        if self.in_ {
            1.0
        } else {
            0.0
        }
    }
    pub fn name(&self) -> String {
        format!("osd.{}", self.id)
    }
}

/// A replicated pool.
#[derive(Clone, Debug)]
pub struct Pool {
    pub id: u32,
    pub name: String,
    pub size: u32,
    pub min_size: u32,
    pub pg_num: u32,
    /// The CRUSH rule's device class (Rook's `deviceClass`); None: any class.
    pub device_class: Option<DeviceClass>,
    pub crush_rule: u32,
    pub crush_rule_name: String,
    pub application: String,
    pub(super) last_change: u32,
}

/// A PG id, printed like Ceph: `<pool>.<ps in hex>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PgId {
    pub pool: u32,
    pub ps: u32,
}

impl fmt::Display for PgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:x}", self.pool, self.ps)
    }
}

/// What one OSD holds of a PG: how many of its objects are current there; `backfill`
/// while it is being filled from nothing.
#[derive(Clone, Copy, Debug)]
pub(super) struct Holder {
    pub(super) objects: u64,
    pub(super) backfill: bool,
}

#[derive(Clone, Debug)]
pub(super) struct Pg {
    pub(super) id: PgId,
    pub(super) objects: u64,
    pub(super) bytes: u64,
    pub(super) holders: BTreeMap<i32, Holder>,
    /// CRUSH's set minus down OSDs.
    pub(super) up: Vec<i32>,
    pub(super) acting: Vec<i32>,
    pub(super) peering_until: Option<Duration>,
    pub(super) ever_active: bool,
    pub(super) reserved: bool,
    pub(super) credit: f64,
    /// The last state the PG reported while it had a live primary (shown after `stale+`).
    pub(super) last_bits: u64,
    /// Degraded/misplaced objects as last reported (kept while stale).
    pub(super) frozen: (u64, u64),
    pub(super) last_active: Option<Duration>,
    pub(super) last_peered: Option<Duration>,
    pub(super) last_clean: Option<Duration>,
    pub(super) last_fullsized: Option<Duration>,
    pub(super) last_unstale: Option<Duration>,
    pub(super) last_change: Duration,
}

/// One PG as seen from outside.
#[derive(Clone, Debug, PartialEq)]
pub struct PgSummary {
    pub id: PgId,
    pub state: String,
    pub up: Vec<i32>,
    pub acting: Vec<i32>,
    pub objects: u64,
    pub degraded: u64,
    pub misplaced: u64,
}

#[derive(Clone, Debug)]
pub(super) struct Host {
    pub(super) id: i32,
    pub(super) name: String,
}

/// Something counted over time for the mgr's rates.
#[derive(Clone, Copy, Debug)]
pub(super) struct Sample {
    /// The span the counts accrued over (`from == at` for instant events).
    pub(super) from: Duration,
    pub(super) at: Duration,
    pub(super) ops: u64,
    pub(super) bytes: u64,
}

/// 2026-01-01T00:00:00Z: the default wall-clock time of the model's origin.
const DEFAULT_WALL_ORIGIN: f64 = 1_767_225_600.0;
const MAX_STEPS: u32 = 1_000_000;

/// The cluster.
#[derive(Clone, Debug)]
pub struct CephModel {
    pub params: CephParams,
    pub(super) fsid: String,
    pub(super) mons: Vec<String>,
    pub(super) mgr: String,
    pub(super) mgr_standbys: Vec<String>,
    pub(super) mgr_addr: String,
    pub(super) wall_origin: f64,
    pub(super) now: Duration,
    pub(super) epoch: u32,
    pub(super) hosts: Vec<Host>,
    pub(super) osds: BTreeMap<i32, Osd>,
    pub(super) flags: u32,
    pub(super) pools: BTreeMap<u32, Pool>,
    pub(super) pgs: BTreeMap<PgId, Pg>,
    pub(super) last_up_change: Duration,
    pub(super) last_in_change: Duration,
    pub(super) recovery_log: VecDeque<Sample>,
    pub(super) write_log: VecDeque<Sample>,
    /// Health checks that have fired at least once, with their severity: the mgr keeps
    /// exporting `ceph_health_detail` for them (at 0 once cleared).
    pub(super) fired_checks: BTreeMap<String, &'static str>,
    /// `ceph health mute`: muted checks stay listed but do not count in the status.
    pub(super) mutes: BTreeMap<String, Mute>,
    pub(super) servicemap_epoch: u32,
    pub(super) servicemap_modified: Duration,
    pub(super) servicemap_osds: BTreeSet<i32>,
    write_cursor: BTreeMap<u32, u64>,
    next_rule: u32,
    /// CRUSH results by PG, valid for the placement inputs whose signature is the key.
    raw_cache: (u64, BTreeMap<PgId, Vec<i32>>),
}

/// A version-4-shaped UUID from a seed.
fn uuid_from_seed(seed: u64) -> String {
    let a = crush::mix(seed ^ 0x5eed_f51d);
    let b = crush::mix(a ^ 0xc3ef_0000_0000_0001);
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&a.to_be_bytes());
    bytes[8..].copy_from_slice(&b.to_be_bytes());
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let h: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// A size in TiB as a CRUSH weight (16.16 fixed point).
fn crush_weight_of(size_bytes: u64) -> f64 {
    let tib = size_bytes as f64 / (1u64 << 40) as f64;
    (tib * 65536.0).round() / 65536.0
}

impl CephModel {
    /// An empty cluster: three monitors `a,b,c` (Rook's default) and one manager `a`,
    /// no OSDs, no pools. The fsid is derived from `seed`.
    pub fn new(seed: u64, params: CephParams) -> CephModel {
        CephModel {
            params,
            fsid: uuid_from_seed(seed),
            mons: vec!["a".into(), "b".into(), "c".into()],
            mgr: "a".into(),
            mgr_standbys: Vec::new(),
            mgr_addr: "10.244.1.10".into(),
            wall_origin: DEFAULT_WALL_ORIGIN,
            now: Duration::ZERO,
            epoch: 1,
            hosts: Vec::new(),
            osds: BTreeMap::new(),
            flags: 0,
            pools: BTreeMap::new(),
            pgs: BTreeMap::new(),
            last_up_change: Duration::ZERO,
            last_in_change: Duration::ZERO,
            recovery_log: VecDeque::new(),
            write_log: VecDeque::new(),
            fired_checks: BTreeMap::new(),
            mutes: BTreeMap::new(),
            servicemap_epoch: 1,
            servicemap_modified: Duration::ZERO,
            servicemap_osds: BTreeSet::new(),
            write_cursor: BTreeMap::new(),
            next_rule: 1,
            raw_cache: (0, BTreeMap::new()),
        }
    }

    /// The documented stack (DESIGN.md §1, fixtures/stack/10-rook-ceph.yaml), healthy at
    /// time zero:
    /// - hosts `dirqual1..3`, each with one NVMe OSD (1 TiB) and one HDD OSD (4 TiB). OSD
    ///   ids follow Rook's order of preparing devices per node: **nvme = 0, 2, 4** (on
    ///   dirqual1, 2, 3) and **hdd = 1, 3, 5**;
    /// - pool 1 `.mgr` (size 3, min_size 2, 1 PG, any class, rule 0 `replicated_rule`,
    ///   application mgr), as every Reef cluster has;
    /// - pool 2 `nvme-pool` (size 2, min_size 1, 32 PGs, class nvme, application rbd);
    /// - pool 3 `hdd-pool` (size 3, min_size 2, 32 PGs, class hdd, application rbd);
    /// - data: 2 objects in `.mgr`, 2 400 × 4 MiB in `nvme-pool`, 6 000 × 4 MiB in `hdd-pool`.
    pub fn documented_stack(seed: u64, params: CephParams) -> CephModel {
        let mut m = CephModel::new(seed, params);
        let t = Duration::ZERO;
        for (i, host) in ["dirqual1", "dirqual2", "dirqual3"].iter().enumerate() {
            let i = i as i32;
            m.add_osd(2 * i, host, DeviceClass::Nvme, 1 << 40, t)
                .expect("fresh id");
            m.add_osd(2 * i + 1, host, DeviceClass::Hdd, 4 << 40, t)
                .expect("fresh id");
        }
        m.create_pool(".mgr", 3, 2, 1, None, "mgr", t)
            .expect("fresh pool");
        m.create_pool("nvme-pool", 2, 1, 32, Some(DeviceClass::Nvme), "rbd", t)
            .expect("fresh pool");
        m.create_pool("hdd-pool", 3, 2, 32, Some(DeviceClass::Hdd), "rbd", t)
            .expect("fresh pool");
        m.finish_peering_now();
        m.seed_objects(".mgr", 2, 230_000);
        m.seed_objects("nvme-pool", 2_400, 4 << 20);
        m.seed_objects("hdd-pool", 6_000, 4 << 20);
        m.settle();
        m
    }

    // ----- setup -----

    /// Sets the Unix time (seconds) of the model's time zero, for timestamps in outputs.
    pub fn set_wall_clock_origin(&mut self, unix_secs: f64) {
        self.wall_origin = unix_secs;
    }

    /// The address the mgr's services are advertised on (`mgrmap.services`).
    pub fn set_mgr_addr(&mut self, addr: &str) {
        self.mgr_addr = addr.to_string();
    }

    /// Adds an OSD (up, in, running) under `host` (created if new), with a CRUSH weight
    /// from its size.
    pub fn add_osd(
        &mut self,
        id: i32,
        host: &str,
        class: DeviceClass,
        size_bytes: u64,
        now: Duration,
    ) -> Result<(), CephError> {
        self.advance(now);
        if id < 0 {
            return Err(CephError::Invalid(format!("invalid osd id {id}")));
        }
        if self.osds.contains_key(&id) {
            return Err(CephError::OsdExists(id));
        }
        if !self.hosts.iter().any(|h| h.name == host) {
            let id = -3 - 2 * self.hosts.len() as i32;
            self.hosts.push(Host {
                id,
                name: host.to_string(),
            });
        }
        self.osds.insert(
            id,
            Osd {
                id,
                host: host.to_string(),
                class,
                crush_weight: crush_weight_of(size_bytes),
                size_bytes,
                running: true,
                up: true,
                in_: true,
                auto_out: false,
                mark_down_at: None,
                mark_up_at: None,
                down_since: None,
                ever_stopped: false,
            },
        );
        self.epoch += 1;
        self.last_up_change = self.now;
        self.last_in_change = self.now;
        self.finish();
        Ok(())
    }

    /// Creates a replicated pool with a host failure domain; its PGs are created and peer
    /// (`creating+peering`) before going active. Returns the pool id.
    #[allow(clippy::too_many_arguments)]
    pub fn create_pool(
        &mut self,
        name: &str,
        size: u32,
        min_size: u32,
        pg_num: u32,
        device_class: Option<DeviceClass>,
        application: &str,
        now: Duration,
    ) -> Result<u32, CephError> {
        self.advance(now);
        if self.pools.values().any(|p| p.name == name) {
            return Err(CephError::PoolExists(name.to_string()));
        }
        if !(1..=10).contains(&size) {
            return Err(CephError::Invalid(
                "pool size must be between 1 and 10".into(),
            ));
        }
        if min_size < 1 || min_size > size {
            return Err(CephError::Invalid(format!(
                "pool min_size must be between 1 and size, which is set to {size}"
            )));
        }
        if pg_num == 0 || pg_num > 4096 {
            return Err(CephError::Invalid(
                "pg_num must be between 1 and 4096".into(),
            ));
        }
        let id = self.pools.keys().next_back().map_or(1, |k| k + 1);
        let (crush_rule, crush_rule_name) = match device_class {
            None => (0, "replicated_rule".to_string()),
            Some(_) => {
                let r = self.next_rule;
                self.next_rule += 1;
                (r, name.to_string())
            }
        };
        self.epoch += 1;
        self.pools.insert(
            id,
            Pool {
                id,
                name: name.to_string(),
                size,
                min_size,
                pg_num,
                device_class,
                crush_rule,
                crush_rule_name,
                application: application.to_string(),
                last_change: self.epoch,
            },
        );
        for ps in 0..pg_num {
            let pid = PgId { pool: id, ps };
            self.pgs.insert(
                pid,
                Pg {
                    id: pid,
                    objects: 0,
                    bytes: 0,
                    holders: BTreeMap::new(),
                    up: Vec::new(),
                    acting: Vec::new(),
                    peering_until: None,
                    ever_active: false,
                    reserved: false,
                    credit: 0.0,
                    last_bits: CREATING,
                    frozen: (0, 0),
                    last_active: None,
                    last_peered: None,
                    last_clean: None,
                    last_fullsized: None,
                    last_unstale: Some(self.now),
                    last_change: self.now,
                },
            );
        }
        self.finish();
        Ok(id)
    }

    /// Ends every PG's peering now (used to build a cluster that is already settled).
    fn finish_peering_now(&mut self) {
        let now = self.now;
        for pg in self.pgs.values_mut() {
            if pg.peering_until.is_some() {
                pg.peering_until = Some(now);
            }
        }
        self.settle();
    }

    /// Existing data: like a write, but not counted as client I/O.
    fn seed_objects(&mut self, pool: &str, count: u64, object_bytes: u64) {
        let id = self.pool_by_name(pool).expect("known pool").id;
        self.put_objects(id, count, object_bytes, false);
    }

    // ----- inputs -----

    /// The OSD's process (its pod) started or stopped. A stopped OSD is marked down after
    /// `osd_stop_mark_down`; a started one is marked up after `osd_boot_time`.
    pub fn set_osd_running(
        &mut self,
        id: i32,
        running: bool,
        now: Duration,
    ) -> Result<(), CephError> {
        self.set_osd_process(id, running, now, self.params.osd_stop_mark_down)
    }

    /// The OSD vanished without a word (its node lost power or the network): marked down
    /// only after `osd_heartbeat_grace`. Start it again with [`CephModel::set_osd_running`].
    pub fn set_osd_unreachable(&mut self, id: i32, now: Duration) -> Result<(), CephError> {
        self.set_osd_process(id, false, now, self.params.osd_heartbeat_grace)
    }

    fn set_osd_process(
        &mut self,
        id: i32,
        running: bool,
        now: Duration,
        detect: Duration,
    ) -> Result<(), CephError> {
        self.advance(now);
        let boot = self.params.osd_boot_time;
        let t = self.now;
        let osd = self.osds.get_mut(&id).ok_or(CephError::NoSuchOsd(id))?;
        let mut restarted = false;
        if running {
            if !osd.running {
                osd.running = true;
                osd.mark_down_at = None;
                if !osd.up {
                    osd.mark_up_at = Some(t + boot);
                }
                restarted = osd.ever_stopped;
            }
        } else if osd.running {
            osd.running = false;
            osd.ever_stopped = true;
            osd.mark_up_at = None;
            if osd.up {
                osd.mark_down_at = Some(t + detect);
            }
        } else if osd.up {
            // Already stopped: a shorter detection (e.g. a later clean report) wins.
            let at = t + detect;
            osd.mark_down_at = Some(osd.mark_down_at.map_or(at, |m| m.min(at)));
        }
        if restarted {
            // A restarted OSD shows in the servicemap (seen in the lab's captures).
            self.servicemap_osds.insert(id);
            self.servicemap_epoch += 1;
            self.servicemap_modified = t;
        }
        self.finish();
        Ok(())
    }

    /// `ceph osd out <id>`. Ok(false) when it already was out.
    pub fn osd_out(&mut self, id: i32, now: Duration) -> Result<bool, CephError> {
        self.advance(now);
        let osd = self.osds.get_mut(&id).ok_or(CephError::NoSuchOsd(id))?;
        if !osd.in_ {
            return Ok(false);
        }
        osd.in_ = false;
        osd.auto_out = false;
        self.last_in_change = self.now;
        self.epoch += 1;
        self.finish();
        Ok(true)
    }

    /// `ceph osd in <id>`. Ok(false) when it already was in.
    pub fn osd_in(&mut self, id: i32, now: Duration) -> Result<bool, CephError> {
        self.advance(now);
        let t = self.now;
        let osd = self.osds.get_mut(&id).ok_or(CephError::NoSuchOsd(id))?;
        if osd.in_ {
            return Ok(false);
        }
        osd.in_ = true;
        osd.auto_out = false;
        if !osd.up {
            // The down-out timer starts again (OSDMonitor::tick's down_pending_out).
            osd.down_since = Some(t);
        }
        self.last_in_change = t;
        self.epoch += 1;
        self.finish();
        Ok(true)
    }

    /// `ceph osd down <id>`: marked down now; a running OSD notices ("wrongly marked me
    /// down") and boots back up. Ok(false) when it already was down.
    pub fn osd_down(&mut self, id: i32, now: Duration) -> Result<bool, CephError> {
        self.advance(now);
        let t = self.now;
        let boot = self.params.osd_boot_time;
        let osd = self.osds.get_mut(&id).ok_or(CephError::NoSuchOsd(id))?;
        if !osd.up {
            return Ok(false);
        }
        osd.up = false;
        osd.down_since = Some(t);
        osd.mark_down_at = None;
        if osd.running {
            osd.mark_up_at = Some(t + boot);
        }
        self.last_up_change = t;
        self.epoch += 1;
        self.finish();
        Ok(true)
    }

    /// `ceph osd set <flag>` (`noout`, `noup`, `nodown`, `noin`, `nobackfill`,
    /// `norebalance`, `norecover`, `noscrub`, `nodeep-scrub`, `notieragent`,
    /// `nosnaptrim`, `pause`).
    pub fn set_flag(&mut self, name: &str, now: Duration) -> Result<(), CephError> {
        let bits = flag_bits(name).ok_or_else(|| CephError::UnknownFlag(name.to_string()))?;
        self.advance(now);
        self.flags |= bits;
        self.epoch += 1;
        self.finish();
        Ok(())
    }

    /// `ceph health mute CODE [TTL] [--sticky]` (`HealthMonitor::prepare_command`): a
    /// non-sticky mute needs the check raised now and records its summary and count.
    pub fn mute(
        &mut self,
        code: &str,
        ttl: Option<Duration>,
        sticky: bool,
        now: Duration,
    ) -> Result<(), String> {
        self.advance(now);
        let (summary, count) = match self.health_checks().into_iter().find(|c| c.name == code) {
            Some(c) if !sticky => (c.message, c.count),
            None if !sticky => {
                return Err(format!("health alert {code} is not currently raised"));
            }
            _ => (String::new(), 0),
        };
        self.mutes.insert(
            code.to_string(),
            Mute {
                sticky,
                summary,
                count,
                until: ttl.map(|t| self.now + t),
            },
        );
        self.finish();
        Ok(())
    }

    /// `ceph health unmute [CODE]` (none: every mute).
    pub fn unmute(&mut self, code: Option<&str>, now: Duration) {
        self.advance(now);
        match code {
            Some(c) => {
                self.mutes.remove(c);
            }
            None => self.mutes.clear(),
        }
        self.finish();
    }

    /// `ceph config get` for the options the model has, in seconds (Ceph's int options).
    pub fn config_get(&self, key: &str) -> Option<f64> {
        let p = &self.params;
        Some(match key {
            "osd_heartbeat_grace" => p.osd_heartbeat_grace.as_secs_f64(),
            "mon_osd_down_out_interval" => p.mon_osd_down_out_interval.as_secs_f64(),
            "osd_max_backfills" => f64::from(p.osd_max_backfills),
            _ => return None,
        })
    }

    /// `ceph config set` for the options the model has; `false` for another option.
    pub fn config_set(&mut self, key: &str, value: f64, now: Duration) -> bool {
        self.advance(now);
        let secs = Duration::from_secs_f64(value.max(0.0));
        match key {
            "osd_heartbeat_grace" => self.params.osd_heartbeat_grace = secs,
            "mon_osd_down_out_interval" => self.params.mon_osd_down_out_interval = secs,
            "osd_max_backfills" => self.params.osd_max_backfills = value.max(1.0) as u32,
            _ => return false,
        }
        self.finish();
        true
    }

    /// `ceph osd unset <flag>`.
    pub fn unset_flag(&mut self, name: &str, now: Duration) -> Result<(), CephError> {
        let bits = flag_bits(name).ok_or_else(|| CephError::UnknownFlag(name.to_string()))?;
        self.advance(now);
        self.flags &= !bits;
        self.epoch += 1;
        self.finish();
        Ok(())
    }

    /// `ceph osd pool set <pool> size <n>` (min_size is lowered to fit).
    pub fn set_pool_size(&mut self, pool: &str, size: u32, now: Duration) -> Result<(), CephError> {
        self.advance(now);
        if !(1..=10).contains(&size) {
            return Err(CephError::Invalid(
                "pool size must be between 1 and 10".into(),
            ));
        }
        let epoch = self.epoch + 1;
        let p = self.pool_mut(pool)?;
        p.size = size;
        p.min_size = p.min_size.min(size);
        p.last_change = epoch;
        self.epoch = epoch;
        self.finish();
        Ok(())
    }

    /// `ceph osd pool set <pool> min_size <n>`.
    pub fn set_pool_min_size(
        &mut self,
        pool: &str,
        min_size: u32,
        now: Duration,
    ) -> Result<(), CephError> {
        self.advance(now);
        let epoch = self.epoch + 1;
        let p = self.pool_mut(pool)?;
        if min_size < 1 || min_size > p.size {
            return Err(CephError::Invalid(format!(
                "pool min_size must be between 1 and size, which is set to {}",
                p.size
            )));
        }
        p.min_size = min_size;
        p.last_change = epoch;
        self.epoch = epoch;
        self.finish();
        Ok(())
    }

    /// Client writes of `count` objects of `object_bytes` each, spread over the pool's PGs.
    /// Objects aimed at a PG that cannot take writes (inactive, peering, stale, an acting
    /// OSD dead but not yet marked down, `pausewr`) are not written: returns how many were.
    pub fn write_objects(
        &mut self,
        pool: &str,
        count: u64,
        object_bytes: u64,
        now: Duration,
    ) -> Result<u64, CephError> {
        self.advance(now);
        let id = self
            .pool_by_name(pool)
            .ok_or_else(|| CephError::NoSuchPool(pool.to_string()))?
            .id;
        let n = self.put_objects(id, count, object_bytes, true);
        self.finish();
        Ok(n)
    }

    fn put_objects(&mut self, pool: u32, count: u64, object_bytes: u64, record: bool) -> u64 {
        let pg_num = u64::from(self.pools[&pool].pg_num);
        let cursor = *self.write_cursor.get(&pool).unwrap_or(&0);
        let base = count / pg_num;
        let rem = count % pg_num;
        let mut written = 0;
        for ps in 0..pg_num {
            let extra = u64::from((ps + pg_num - cursor % pg_num) % pg_num < rem);
            let k = base + extra;
            if k == 0 {
                continue;
            }
            let id = PgId {
                pool,
                ps: ps as u32,
            };
            if !self.pg_takes_writes(&self.pgs[&id]) {
                continue;
            }
            let live: Vec<i32> = self.pgs[&id]
                .acting
                .iter()
                .copied()
                .filter(|o| self.osds[o].up)
                .collect();
            let pg = self.pgs.get_mut(&id).expect("pg");
            pg.objects += k;
            pg.bytes += k * object_bytes;
            for o in live {
                pg.holders
                    .entry(o)
                    .or_insert(Holder {
                        objects: 0,
                        backfill: false,
                    })
                    .objects += k;
            }
            written += k;
        }
        self.write_cursor.insert(pool, cursor + rem);
        if record && written > 0 {
            self.write_log.push_back(Sample {
                from: self.now,
                at: self.now,
                ops: written,
                bytes: written * object_bytes,
            });
        }
        written
    }

    // ----- time -----

    /// The model's current time.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// Runs the cluster up to `now`: failure detection, auto-out, peering, recovery,
    /// processed in time order however large the step. Earlier times are ignored.
    pub fn advance(&mut self, now: Duration) {
        let mut steps = 0;
        while self.now < now {
            steps += 1;
            if steps > MAX_STEPS {
                self.now = now;
                break;
            }
            let next = self
                .next_event()
                .map_or(now, |t| t.min(now))
                .max(self.now + Duration::from_nanos(1))
                .min(now);
            self.run_recovery_until(next);
            // The states held until this instant; then what is due happens.
            self.touch();
            self.settle();
        }
        self.touch();
        // Checks that fire and clear within one call are not remembered: callers advance
        // often (every command, every scrape).
        self.record_health();
    }

    /// The earliest future time something happens on its own.
    fn next_event(&self) -> Option<Duration> {
        let now = self.now;
        let mut best: Option<Duration> = None;
        let mut consider = |t: Duration| {
            if t > now {
                best = Some(best.map_or(t, |b: Duration| b.min(t)));
            }
        };
        for osd in self.osds.values() {
            if let Some(t) = osd.mark_down_at {
                if self.flags & NODOWN == 0 {
                    consider(t);
                }
            }
            if let Some(t) = osd.mark_up_at {
                if self.flags & NOUP == 0 && osd.running {
                    consider(t);
                }
            }
            if let Some(since) = osd.down_since {
                if osd.in_ && !osd.up && self.can_mark_out() {
                    consider(since + self.params.mon_osd_down_out_interval);
                }
            }
        }
        for pg in self.pgs.values() {
            if let Some(t) = pg.peering_until {
                consider(t);
            }
        }
        let share = self.recovery_share();
        if share > 0.0 {
            for pg in self.pgs.values().filter(|p| p.reserved) {
                let remaining = self.missing_on_targets(pg) as f64 - pg.credit;
                let secs = (remaining.max(0.0) / share).max(0.0);
                consider(now + Duration::from_secs_f64(secs) + Duration::from_nanos(1));
            }
        }
        best
    }

    fn recovery_share(&self) -> f64 {
        let n = self.pgs.values().filter(|p| p.reserved).count();
        if n == 0 || self.params.recovery_objects_per_sec <= 0.0 {
            0.0
        } else {
            self.params.recovery_objects_per_sec / n as f64
        }
    }

    /// Recovery/backfill progress from `self.now` to `until`.
    fn run_recovery_until(&mut self, until: Duration) {
        let dt = until.saturating_sub(self.now).as_secs_f64();
        let share = self.recovery_share();
        if share > 0.0 && dt > 0.0 {
            let ids: Vec<PgId> = self
                .pgs
                .values()
                .filter(|p| p.reserved)
                .map(|p| p.id)
                .collect();
            let (mut objects, mut bytes) = (0u64, 0u64);
            for id in ids {
                let (rec, bf) = self.targets(&self.pgs[&id]);
                let pg = self.pgs.get_mut(&id).expect("pg");
                let n = pg.objects;
                pg.credit += share * dt;
                let mut budget = (pg.credit + 1e-3).floor() as u64;
                let mut applied = 0;
                for o in rec.into_iter().chain(bf) {
                    let h = pg.holders.entry(o).or_insert(Holder {
                        objects: 0,
                        backfill: true,
                    });
                    let take = n.saturating_sub(h.objects).min(budget);
                    h.objects += take;
                    if h.objects >= n {
                        h.backfill = false;
                    }
                    budget -= take;
                    applied += take;
                }
                pg.credit = (pg.credit - applied as f64).max(0.0);
                objects += applied;
                bytes += applied * pg.bytes.checked_div(n).unwrap_or(0);
            }
            if objects > 0 {
                self.recovery_log.push_back(Sample {
                    from: self.now,
                    at: until,
                    ops: objects,
                    bytes,
                });
            }
        }
        self.now = until;
    }

    /// Applies everything due at `self.now` until nothing changes.
    pub(super) fn settle(&mut self) {
        for _ in 0..256 {
            let mut changed = self.process_osd_timers();
            changed |= self.remap();
            changed |= self.complete_peering();
            changed |= self.remove_strays();
            changed |= self.update_reservations();
            if !changed {
                break;
            }
        }
        self.touch();
    }

    /// Mark-down/mark-up timers and the down-out interval.
    fn process_osd_timers(&mut self) -> bool {
        let t = self.now;
        let flags = self.flags;
        let mut changed = false;
        for osd in self.osds.values_mut() {
            if let Some(at) = osd.mark_down_at {
                if at <= t && flags & NODOWN == 0 {
                    osd.mark_down_at = None;
                    if osd.up {
                        osd.up = false;
                        osd.down_since = Some(t);
                        self.last_up_change = t;
                        changed = true;
                    }
                }
            }
            if let Some(at) = osd.mark_up_at {
                if at <= t && flags & NOUP == 0 && osd.running {
                    osd.mark_up_at = None;
                    if !osd.up {
                        osd.up = true;
                        osd.down_since = None;
                        self.last_up_change = t;
                        changed = true;
                        // mon_osd_auto_mark_auto_out_in
                        if !osd.in_ && osd.auto_out && flags & NOIN == 0 {
                            osd.in_ = true;
                            osd.auto_out = false;
                            self.last_in_change = t;
                        }
                    }
                }
            }
        }
        // Down-out, oldest first, re-checking the in-ratio after each.
        let mut due: Vec<(Duration, i32)> = self
            .osds
            .values()
            .filter(|o| o.in_ && !o.up)
            .filter_map(|o| o.down_since.map(|s| (s, o.id)))
            .filter(|(s, _)| *s + self.params.mon_osd_down_out_interval <= t)
            .collect();
        due.sort();
        for (_, id) in due {
            if self.osds.values().all(|o| !o.up) {
                // mon_osd_down_out_subtree_limit: the whole root is down; reset the timer.
                if let Some(o) = self.osds.get_mut(&id) {
                    o.down_since = Some(t);
                }
                continue;
            }
            if !self.can_mark_out() {
                continue;
            }
            let o = self.osds.get_mut(&id).expect("osd");
            o.in_ = false;
            o.auto_out = true;
            self.last_in_change = t;
            changed = true;
        }
        if changed {
            self.epoch += 1;
        }
        changed
    }

    /// `OSDMonitor::can_mark_out` for the automatic down-out (noout, min in ratio).
    fn can_mark_out(&self) -> bool {
        if self.flags & NOOUT != 0 || self.osds.is_empty() {
            return false;
        }
        let n_in = self.osds.values().filter(|o| o.in_).count();
        let ratio = n_in as f32 / self.osds.len() as f32;
        ratio >= self.params.mon_osd_min_in_ratio as f32
    }

    pub(super) fn buckets(&self) -> Vec<Bucket> {
        self.hosts
            .iter()
            .map(|h| Bucket {
                id: h.id,
                leaves: self
                    .osds
                    .values()
                    .filter(|o| o.host == h.name)
                    .map(|o| Leaf {
                        id: o.id,
                        class: o.class,
                        weight: o.crush_weight,
                        is_in: o.in_,
                    })
                    .collect(),
            })
            .collect()
    }

    fn is_up(&self, osd: i32) -> bool {
        self.osds.get(&osd).is_some_and(|o| o.up)
    }

    /// A signature of everything CRUSH placement depends on.
    fn placement_signature(&self) -> u64 {
        let mut h = crush::mix(self.pgs.len() as u64);
        for o in self.osds.values() {
            let host = self
                .hosts
                .iter()
                .position(|x| x.name == o.host)
                .unwrap_or(0);
            h = crush::hash3(
                h,
                ((o.id as i64 as u64) << 8) | (u64::from(o.in_) << 4) | o.class as u64,
                o.crush_weight.to_bits() ^ host as u64,
            );
        }
        for p in self.pools.values() {
            let class = p.device_class.map_or(0, |c| c as u64 + 1);
            h = crush::hash3(h, u64::from(p.id) << 32 | u64::from(p.size), class);
        }
        h
    }

    /// The raw CRUSH mapping of every PG (cached while the placement inputs don't change).
    fn raw_mappings(&mut self) {
        let sig = self.placement_signature();
        if self.raw_cache.0 == sig && self.raw_cache.1.len() == self.pgs.len() {
            return;
        }
        let buckets = self.buckets();
        let map = self
            .pgs
            .keys()
            .map(|id| {
                let pool = &self.pools[&id.pool];
                let raw = crush::place(id.pool, id.ps, pool.size, pool.device_class, &buckets);
                (*id, raw)
            })
            .collect();
        self.raw_cache = (sig, map);
    }

    /// Recomputes every PG's up and acting sets; a change starts a new interval (peering).
    fn remap(&mut self) -> bool {
        self.raw_mappings();
        let t = self.now;
        let mut any = false;
        let mut temp_changed = false;
        let ids: Vec<PgId> = self.pgs.keys().copied().collect();
        for id in ids {
            let pool = &self.pools[&id.pool];
            let up: Vec<i32> = self.raw_cache.1[&id]
                .iter()
                .copied()
                .filter(|o| self.is_up(*o))
                .collect();
            let acting = self.choose_acting(&self.pgs[&id], &up, pool.size, pool.min_size);
            let jitter = 0.5
                + crush::unit(crush::hash3(
                    u64::from(id.pool),
                    u64::from(id.ps),
                    u64::from(self.epoch) ^ 0x7065_6572,
                ));
            let peering = self.params.peering_time.mul_f64(jitter);
            let pg = self.pgs.get_mut(&id).expect("pg");
            if pg.up != up || pg.acting != acting {
                let was_temp = !pg.acting.is_empty() && pg.up != pg.acting;
                let is_temp = !acting.is_empty() && up != acting;
                temp_changed |= was_temp || is_temp;
                pg.up = up;
                pg.acting = acting;
                pg.last_change = t;
                pg.reserved = false;
                pg.credit = 0.0;
                pg.peering_until = if pg.acting.is_empty() {
                    None
                } else {
                    Some(t + peering)
                };
                any = true;
            }
        }
        if temp_changed {
            self.epoch += 1;
        }
        any
    }

    /// `PeeringState::choose_acting`, simplified (see the module doc).
    fn choose_acting(&self, pg: &Pg, up: &[i32], size: u32, min_size: u32) -> Vec<i32> {
        let n = pg.objects;
        let cost = self.params.osd_async_recovery_min_cost;
        let held = |o: i32| pg.holders.get(&o);
        let complete = |o: i32| n == 0 || held(o).is_some_and(|h| h.objects >= n);
        // Async recovery targets are chosen at peering and stay out of the acting set
        // until they are complete (a later, smaller backlog does not bring them back).
        let kept_async =
            |o: i32| pg.up.as_slice() == up && !pg.acting.is_empty() && !pg.acting.contains(&o);
        let sync = |o: i32| {
            held(o).is_some_and(|h| !h.backfill && n - h.objects.min(n) <= cost)
                && (complete(o) || !kept_async(o))
        };
        let asynch = |o: i32| held(o).is_some_and(|h| !h.backfill && n - h.objects.min(n) > cost);
        let live_holders: Vec<i32> = pg
            .holders
            .keys()
            .copied()
            .filter(|o| self.is_up(*o))
            .collect();
        let authority: Option<i32> = if n == 0 {
            up.first().copied().or(live_holders.first().copied())
        } else {
            live_holders.iter().copied().find(|o| complete(*o))
        };
        let Some(authority) = authority else {
            return Vec::new();
        };
        let size = size as usize;
        let mut acting: Vec<i32> = up
            .iter()
            .copied()
            .filter(|o| complete(*o) || sync(*o))
            .collect();
        for o in &live_holders {
            if acting.len() >= size {
                break;
            }
            if !up.contains(o) && !acting.contains(o) && (complete(*o) || sync(*o)) {
                acting.push(*o);
            }
        }
        if !acting.iter().any(|o| complete(*o)) {
            acting.insert(0, authority);
            acting.truncate(size.max(1));
        }
        for o in up {
            if acting.len() >= min_size as usize {
                break;
            }
            if !acting.contains(o) && asynch(*o) {
                acting.push(*o);
            }
        }
        acting
    }

    /// Ends peering that is due; new up members get (empty) backfill copies.
    fn complete_peering(&mut self) -> bool {
        let t = self.now;
        let mut any = false;
        for pg in self.pgs.values_mut() {
            if pg.peering_until.is_some_and(|u| u <= t) {
                pg.peering_until = None;
                any = true;
                let backfill = pg.objects > 0;
                for &o in &pg.up {
                    pg.holders.entry(o).or_insert(Holder {
                        objects: 0,
                        backfill,
                    });
                }
            }
        }
        any
    }

    /// A clean PG deletes its copies on live OSDs outside its up and acting sets.
    fn remove_strays(&mut self) -> bool {
        let mut gone: Vec<(PgId, i32)> = Vec::new();
        for pg in self.pgs.values() {
            if self.pg_bits(pg) & CLEAN == 0 {
                continue;
            }
            for &o in pg.holders.keys() {
                if !pg.up.contains(&o) && !pg.acting.contains(&o) && self.is_up(o) {
                    gone.push((pg.id, o));
                }
            }
        }
        for (id, o) in &gone {
            if let Some(pg) = self.pgs.get_mut(id) {
                pg.holders.remove(o);
            }
        }
        !gone.is_empty()
    }

    /// Recovery reservations (`osd_max_backfills` slots per OSD).
    fn update_reservations(&mut self) -> bool {
        let max = self.params.osd_max_backfills.max(1);
        let mut release = Vec::new();
        let mut want: Vec<((u8, PgId), Vec<i32>)> = Vec::new();
        for pg in self.pgs.values() {
            let (rec, bf) = self.targets(pg);
            let eligible = pg.peering_until.is_none()
                && !pg.acting.is_empty()
                && pg
                    .acting
                    .iter()
                    .chain(rec.iter())
                    .chain(bf.iter())
                    .all(|o| self.osds[o].running && self.osds[o].up);
            let (degraded, _) = self.pg_counts(pg);
            let rec_ok = !rec.is_empty() && self.flags & NORECOVER == 0;
            let bf_ok = rec.is_empty()
                && !bf.is_empty()
                && self.flags & NOBACKFILL == 0
                && !(self.flags & NOREBALANCE != 0 && degraded == 0);
            let need = eligible && (rec_ok || bf_ok);
            if pg.reserved && !need {
                release.push(pg.id);
            } else if !pg.reserved && need {
                let pool = &self.pools[&pg.id.pool];
                let prio = if (pg.acting.len() as u32) < pool.min_size {
                    0
                } else if rec_ok {
                    1
                } else if degraded > 0 {
                    2
                } else {
                    3
                };
                let mut members = vec![pg.acting[0]];
                members.extend(rec.iter().chain(bf.iter()).copied());
                want.push(((prio, pg.id), members));
            }
        }
        let released = !release.is_empty();
        for id in release {
            if let Some(pg) = self.pgs.get_mut(&id) {
                pg.reserved = false;
                pg.credit = 0.0;
            }
        }
        if want.is_empty() {
            return released;
        }
        let mut used: BTreeMap<i32, u32> = BTreeMap::new();
        for pg in self.pgs.values().filter(|p| p.reserved) {
            let (rec, bf) = self.targets(pg);
            let mut members: BTreeSet<i32> = rec.into_iter().chain(bf).collect();
            members.insert(pg.acting[0]);
            for m in members {
                *used.entry(m).or_default() += 1;
            }
        }
        want.sort_by_key(|w| w.0);
        let mut granted = false;
        for ((_, id), members) in want {
            let members: BTreeSet<i32> = members.into_iter().collect();
            if members
                .iter()
                .all(|m| used.get(m).copied().unwrap_or(0) < max)
            {
                for m in &members {
                    *used.entry(*m).or_default() += 1;
                }
                if let Some(pg) = self.pgs.get_mut(&id) {
                    pg.reserved = true;
                    granted = true;
                }
            }
        }
        released || granted
    }

    /// Records, at `self.now`, which properties every PG has (for the stuck checks and
    /// `stale+<last state>`), trims the rate windows and remembers fired health checks.
    pub(super) fn touch(&mut self) {
        let t = self.now;
        let states: Vec<(PgId, u64, (u64, u64))> = self
            .pgs
            .values()
            .map(|pg| (pg.id, self.pg_bits(pg), self.pg_counts(pg)))
            .collect();
        for (id, bits, counts) in states {
            let pg = self.pgs.get_mut(&id).expect("pg");
            let stale = bits & STALE != 0;
            if !stale {
                pg.last_unstale = Some(t);
                pg.last_bits = bits;
                pg.frozen = counts;
                if bits & ACTIVE != 0 {
                    pg.last_active = Some(t);
                    pg.ever_active = true;
                }
                if bits & (ACTIVE | PEERED) != 0 {
                    pg.last_peered = Some(t);
                }
                if bits & CLEAN != 0 {
                    pg.last_clean = Some(t);
                }
                if bits & UNDERSIZED == 0 {
                    pg.last_fullsized = Some(t);
                }
            }
        }
        let keep = self.params.stats_window;
        while self.recovery_log.front().is_some_and(|s| s.at + keep < t) {
            self.recovery_log.pop_front();
        }
        while self.write_log.front().is_some_and(|s| s.at + keep < t) {
            self.write_log.pop_front();
        }
    }

    /// Remembers the health checks active now (for `ceph_health_detail`), and drops
    /// the mutes Ceph's `HealthMonitor::check_mutes` would: expired ones, and non-sticky
    /// ones whose check cleared or whose count grew.
    pub(super) fn record_health(&mut self) {
        let checks = self.health_checks();
        for c in &checks {
            self.fired_checks
                .entry(c.name.clone())
                .or_insert(c.severity.as_str());
        }
        let now = self.now;
        self.mutes.retain(|code, m| {
            if m.until.is_some_and(|u| now >= u) {
                return false;
            }
            m.sticky || checks.iter().any(|c| &c.name == code && c.count <= m.count)
        });
    }

    /// Settles what a caller's action changed and records the resulting health.
    fn finish(&mut self) {
        self.settle();
        self.record_health();
    }

    // ----- derived PG state -----

    /// Live OSDs of the PG that still need objects: (log-based recovery, backfill).
    pub(super) fn targets(&self, pg: &Pg) -> (Vec<i32>, Vec<i32>) {
        let n = pg.objects;
        let (mut rec, mut bf) = (Vec::new(), Vec::new());
        if n == 0 || pg.acting.is_empty() {
            return (rec, bf);
        }
        let mut seen = BTreeSet::new();
        for &o in pg.acting.iter().chain(pg.up.iter()) {
            if !seen.insert(o) || !self.is_up(o) {
                continue;
            }
            match pg.holders.get(&o) {
                Some(h) if h.objects >= n => {}
                Some(h) if !h.backfill => rec.push(o),
                _ if pg.up.contains(&o) => bf.push(o),
                _ => {}
            }
        }
        (rec, bf)
    }

    fn missing_on_targets(&self, pg: &Pg) -> u64 {
        let (rec, bf) = self.targets(pg);
        rec.iter()
            .chain(bf.iter())
            .map(|o| {
                pg.objects
                    .saturating_sub(pg.holders.get(o).map_or(0, |h| h.objects))
            })
            .sum()
    }

    /// (degraded, misplaced) object copies of a PG (see the module doc).
    pub(super) fn pg_counts(&self, pg: &Pg) -> (u64, u64) {
        if pg.acting.is_empty() {
            return pg.frozen;
        }
        let n = pg.objects;
        if n == 0 {
            return (0, 0);
        }
        let size = u64::from(self.pools[&pg.id.pool].size);
        let h = |o: &i32| pg.holders.get(o).map_or(0, |x| x.objects.min(n));
        let members: BTreeSet<i32> = pg
            .up
            .iter()
            .chain(pg.acting.iter())
            .copied()
            .filter(|o| self.is_up(*o))
            .collect();
        let sum: u64 = members.iter().map(h).sum();
        let degraded = (n * size).saturating_sub(sum);
        let extra: u64 = members.iter().filter(|o| !pg.up.contains(o)).map(h).sum();
        let up_deficit: u64 = pg.up.iter().map(|o| n - h(o)).sum::<u64>()
            + n * size.saturating_sub(pg.up.len() as u64);
        (degraded, extra.min(up_deficit))
    }

    /// The PG's state bits now.
    pub(super) fn pg_bits(&self, pg: &Pg) -> u64 {
        let pool = &self.pools[&pg.id.pool];
        let creating = if pg.ever_active { 0 } else { CREATING };
        if pg.acting.is_empty() {
            let live_holder = pg.holders.keys().any(|o| self.is_up(*o));
            if pg.up.is_empty() && !live_holder {
                return STALE | pg.last_bits;
            }
            let any_copy = pg.objects == 0 || pg.holders.values().any(|h| h.objects >= pg.objects);
            return creating | if any_copy { DOWN } else { INCOMPLETE };
        }
        if pg.peering_until.is_some() {
            let remapped = if pg.up != pg.acting { REMAPPED } else { 0 };
            return creating | PEERING | remapped;
        }
        let (rec, bf) = self.targets(pg);
        let (degraded, _) = self.pg_counts(pg);
        let n_act = pg.acting.len() as u32;
        let mut b = if n_act >= pool.min_size {
            ACTIVE
        } else {
            PEERED
        };
        if n_act < pool.size {
            b |= UNDERSIZED;
        }
        if degraded > 0 {
            b |= DEGRADED;
        }
        if pg.up != pg.acting {
            b |= REMAPPED;
        }
        if !rec.is_empty() {
            b |= if pg.reserved {
                RECOVERING
            } else {
                RECOVERY_WAIT
            };
        } else if !bf.is_empty() {
            b |= if pg.reserved {
                BACKFILLING
            } else {
                BACKFILL_WAIT
            };
        }
        if b & ACTIVE != 0 && n_act >= pool.size && degraded == 0 && rec.is_empty() && bf.is_empty()
        {
            b |= CLEAN;
        }
        b
    }

    /// Whether client writes to this PG go through now.
    fn pg_takes_writes(&self, pg: &Pg) -> bool {
        let bits = self.pg_bits(pg);
        self.flags & PAUSEWR == 0
            && bits & ACTIVE != 0
            && bits & (STALE | PEERING) == 0
            && pg.acting.iter().all(|o| self.osds[o].running)
    }

    // ----- queries -----

    pub fn fsid(&self) -> &str {
        &self.fsid
    }

    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    pub fn osds(&self) -> impl Iterator<Item = &Osd> {
        self.osds.values()
    }

    pub fn osd(&self, id: i32) -> Option<&Osd> {
        self.osds.get(&id)
    }

    pub fn pools(&self) -> impl Iterator<Item = &Pool> {
        self.pools.values()
    }

    pub fn pool_by_name(&self, name: &str) -> Option<&Pool> {
        self.pools.values().find(|p| p.name == name)
    }

    fn pool_mut(&mut self, name: &str) -> Result<&mut Pool, CephError> {
        self.pools
            .values_mut()
            .find(|p| p.name == name)
            .ok_or_else(|| CephError::NoSuchPool(name.to_string()))
    }

    /// Whether an OSD map flag (`noout`, ...) is set.
    pub fn has_flag(&self, name: &str) -> bool {
        flag_bits(name).is_some_and(|b| self.flags & b == b)
    }

    /// The set flags, as `ceph osd dump` names them.
    pub fn flags(&self) -> Vec<&'static str> {
        FLAG_NAMES
            .iter()
            .filter(|(_, b)| self.flags & b != 0)
            .map(|(n, _)| *n)
            .collect()
    }

    /// Every PG's state, up and acting sets and object counts.
    pub fn pg_summaries(&self) -> Vec<PgSummary> {
        self.pgs
            .values()
            .map(|pg| {
                let (degraded, misplaced) = self.pg_counts(pg);
                PgSummary {
                    id: pg.id,
                    state: pg_state_string(self.pg_bits(pg)),
                    up: pg.up.clone(),
                    acting: pg.acting.clone(),
                    objects: pg.objects,
                    degraded,
                    misplaced,
                }
            })
            .collect()
    }

    /// PG counts by state name.
    pub fn pg_states(&self) -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        for pg in self.pgs.values() {
            *m.entry(pg_state_string(self.pg_bits(pg))).or_default() += 1;
        }
        m
    }

    /// Every PG is `active+clean`.
    pub fn all_pgs_active_clean(&self) -> bool {
        self.pgs
            .values()
            .all(|pg| self.pg_bits(pg) == ACTIVE | CLEAN)
    }

    /// Every PG of the pool is active (not peering, peered-only, down, incomplete or stale).
    pub fn pool_active(&self, pool: &str) -> bool {
        let Some(p) = self.pool_by_name(pool) else {
            return false;
        };
        self.pgs_of(p.id).all(|pg| {
            let b = self.pg_bits(pg);
            b & ACTIVE != 0 && b & STALE == 0
        })
    }

    /// Client I/O to (part of) the pool blocks now: some PG is not active, an acting OSD
    /// is dead but not yet marked down, or `pause` is set. Unknown pools are blocked.
    pub fn pool_io_blocked(&self, pool: &str) -> bool {
        self.pool_blocked_ratio(pool) > 0.0 || self.flags & (PAUSERD | PAUSEWR) != 0
    }

    /// The fraction of the pool's PGs (hence of its objects and requests) whose I/O blocks.
    pub fn pool_blocked_ratio(&self, pool: &str) -> f64 {
        let Some(p) = self.pool_by_name(pool) else {
            return 1.0;
        };
        let (mut n, mut blocked) = (0u64, 0u64);
        for pg in self.pgs_of(p.id) {
            n += 1;
            if !self.pg_takes_writes(pg) {
                blocked += 1;
            }
        }
        if n == 0 {
            0.0
        } else {
            blocked as f64 / n as f64
        }
    }

    pub(super) fn pgs_of(&self, pool: u32) -> impl Iterator<Item = &Pg> {
        self.pgs
            .range(PgId { pool, ps: 0 }..=PgId { pool, ps: u32::MAX })
            .map(|(_, pg)| pg)
    }

    /// (degraded object copies, total object copies) cluster-wide.
    pub fn degraded_objects(&self) -> (u64, u64) {
        let d = self.pgs.values().map(|pg| self.pg_counts(pg).0).sum();
        (d, self.object_copies())
    }

    /// (misplaced object copies, total object copies) cluster-wide.
    pub fn misplaced_objects(&self) -> (u64, u64) {
        let m = self.pgs.values().map(|pg| self.pg_counts(pg).1).sum();
        (m, self.object_copies())
    }

    pub(super) fn object_copies(&self) -> u64 {
        self.pgs
            .values()
            .map(|pg| pg.objects * u64::from(self.pools[&pg.id.pool].size))
            .sum()
    }

    /// Unix time of a model time.
    pub(super) fn unix(&self, t: Duration) -> f64 {
        self.wall_origin + t.as_secs_f64()
    }
}

#[cfg(test)]
mod t {
    use super::*;

    #[test]
    fn fsid_is_a_uuid_fixed_by_seed() {
        let a = uuid_from_seed(7);
        assert_eq!(a, uuid_from_seed(7));
        assert_ne!(a, uuid_from_seed(8));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
    }

    #[test]
    fn flag_strings() {
        assert_eq!(flag_string(NOOUT), "noout");
        assert_eq!(
            flag_string(flag_bits("pause").unwrap() | NOOUT),
            "pauserd,pausewr,noout"
        );
        assert!(flag_bits("bogus").is_none());
    }
}
