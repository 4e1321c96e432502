//! Step definitions (thin glue over probes), their catalog for `stormdrill steps`, and
//! the "closest known step" hint for unknown steps.

pub mod ceph;
pub mod checks;
pub mod cluster;
pub mod dr;
pub mod faults;
pub mod gameday;
pub mod http;
pub mod limit;
pub mod load;
pub mod observability;
pub mod platform;
pub mod stack;

use std::sync::LazyLock;

use cucumber::{
    codegen::{inventory, Regex, StepConstructor as _, WorldInventory},
    gherkin::{self, StepType},
};

use crate::{diag, probe::k8s::ProbeError, similar, world::World};

/// Why a step failed; the Display is what cucumber shows under the step.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("{}", diag::one_line(.0))]
    Probe(#[from] ProbeError),
    #[error("expected {expected}, but {seen}")]
    Unmet { expected: String, seen: String },
}

/// One step as documented by `stormdrill steps`.
#[derive(Clone, Copy, Debug)]
pub struct StepDoc {
    /// Keywords the step is registered under.
    pub keywords: &'static [&'static str],
    /// The step's text with placeholders.
    pub pattern: &'static str,
    /// A concrete use, without its keyword.
    pub example: &'static str,
    pub summary: &'static str,
}

const GIVEN: &[&str] = &["Given"];
const GIVEN_THEN: &[&str] = &["Given", "Then"];
const THEN: &[&str] = &["Then"];

/// Every step definition; a unit test keeps it in step with the registered steps.
pub const CATALOG: &[StepDoc] = &[
    StepDoc {
        keywords: GIVEN,
        pattern: "the cluster is reachable",
        example: "the cluster is reachable",
        summary: "GET /version answers; measures api_latency_ms",
    },
    StepDoc {
        keywords: GIVEN_THEN,
        pattern: "every node is Ready",
        example: "every node is Ready",
        summary: "every node's Ready condition is True; criterion nodes_ready",
    },
    StepDoc {
        keywords: GIVEN_THEN,
        pattern: "every pod in namespace {string} is Ready",
        example: "every pod in namespace \"kube-system\" is Ready",
        summary: "every pod not Succeeded is Ready; criterion pods_ready[NAMESPACE]",
    },
    StepDoc {
        keywords: GIVEN_THEN,
        pattern: "the {kind} {string} exists in namespace {string}",
        example: "the service \"kube-dns\" exists in namespace \"kube-system\"",
        summary: "a namespaced object exists; kind singular or plural, any case, \
                  optionally KIND.GROUP",
    },
    StepDoc {
        keywords: GIVEN_THEN,
        pattern: "the [cluster-scoped] {kind} {string} exists",
        example: "the namespace \"kube-system\" exists",
        summary: "a cluster-scoped object exists (namespace, node, storageclass, ...)",
    },
    StepDoc {
        keywords: GIVEN,
        pattern: "the API receives {int} requests per second",
        example: "the API receives 50 requests per second",
        summary: "open-loop load on --api-url for the scenario; timeline.csv in the run folder",
    },
    StepDoc {
        keywords: GIVEN,
        pattern: "the system is in steady state",
        example: "the system is in steady state",
        summary: "waits for K good windows (SLO met, observers healthy); criterion \
                  steady_state_windows",
    },
    StepDoc {
        keywords: THEN,
        pattern: "while degraded the API p99 latency stays under LIMIT (ms)",
        example: "while degraded the API p99 latency stays under the profile's chaos.osd.p99_during_ms",
        summary: "judged when the degraded period ends; criterion p99_during_ms",
    },
    StepDoc {
        keywords: THEN,
        pattern: "while degraded the API error rate stays under LIMIT (%)",
        example: "while degraded the API error rate stays under 1%",
        summary: "judged when the degraded period ends; criterion error_rate_during_pct",
    },
    StepDoc {
        keywords: THEN,
        pattern: "the system recovers within LIMIT",
        example: "the system recovers within 15 minutes",
        summary: "waits for a steady state that holds after the fault's t0; criterion rto_s, \
                  measures detection_s",
    },
    // Stack and faults (steps/stack.rs, steps/faults.rs).
    StepDoc {
        keywords: GIVEN,
        pattern: "the documented stack is deployed",
        example: "the documented stack is deployed",
        summary: "applies --stack (default fixtures/stack) and waits for readiness; fails \
                  listing what is not ready; profile stack.deploy_timeout_s (300)",
    },
    StepDoc {
        keywords: GIVEN_THEN,
        pattern: "{deployment|statefulset} {string} in namespace {string} has {int} Ready \
                  replicas within {duration}",
        example: "deployment \"fastapi\" in namespace \"openalex\" has 3 Ready replicas within 30 seconds",
        summary: "watches until readyReplicas >= N; criterion ready_replicas[NS/NAME]",
    },
    StepDoc {
        keywords: &["When"],
        pattern: "OSD {int} goes down",
        example: "OSD 1 goes down",
        summary: "fault osd-down: scales rook-ceph-osd-<id> to 0; refused while a pool has \
                  size 1; revert scales it back",
    },
    StepDoc {
        keywords: &["When"],
        pattern: "the pod of OSD {int} is deleted",
        example: "the pod of OSD 1 is deleted",
        summary: "fault osd-down: deletes the OSD's pod (its Deployment restarts it)",
    },
    StepDoc {
        keywords: &["When"],
        pattern: "OSD {int} comes back",
        example: "OSD 1 comes back",
        summary: "reverts this scenario's \"OSD {int} goes down\" now",
    },
    StepDoc {
        keywords: &["When"],
        pattern: "OSD {int} is marked out",
        example: "OSD 1 is marked out",
        summary: "fault osd-out: `ceph osd out <id>` in the toolbox; refused while a pool has \
                  size 1; revert `ceph osd in`",
    },
    StepDoc {
        keywords: &["When"],
        pattern: "OSD {int} is marked in",
        example: "OSD 1 is marked in",
        summary: "reverts this scenario's \"OSD {int} is marked out\" now",
    },
    StepDoc {
        keywords: &["When"],
        pattern: "the noout flag is set",
        example: "the noout flag is set",
        summary: "fault noout: `ceph osd set noout`; revert unsets it (unless it was set before)",
    },
    StepDoc {
        keywords: &["When"],
        pattern: "the noout flag is unset",
        example: "the noout flag is unset",
        summary: "reverts this scenario's \"the noout flag is set\" now",
    },
    StepDoc {
        keywords: &["When"],
        pattern: "node {string} loses power",
        example: "node \"dirqual2\" loses power",
        summary: "fault node-power through the target's provider (twin endpoint, \
                  --target-config commands); refused for the last Ready node",
    },
    StepDoc {
        keywords: &["When"],
        pattern: "the node of pod {string} in namespace {string} loses power",
        example: "the node of pod \"postgresql-0\" in namespace \"openalex\" loses power",
        summary: "fault node-power on the node the pod runs on (the database's node, say)",
    },
    StepDoc {
        keywords: &["When"],
        pattern: "a worker without pod {string} in namespace {string} loses power",
        example: "a worker without pod \"postgresql-0\" in namespace \"openalex\" loses power",
        summary: "fault node-power on a Ready worker not running the pod, chosen by the run's \
                  seed",
    },
    StepDoc {
        keywords: &["When"],
        pattern: "the node that lost power regains power",
        example: "the node that lost power regains power",
        summary: "reverts this scenario's power losses now",
    },
    StepDoc {
        keywords: &["When"],
        pattern: "node {string} regains power",
        example: "node \"dirqual2\" regains power",
        summary: "reverts this scenario's power loss of the node now",
    },
    StepDoc {
        keywords: &["When"],
        pattern: "node {string} is drained",
        example: "node \"dirqual1\" is drained",
        summary: "fault node-drain: cordon, evictions honouring PDBs, blocked ones retried up \
                  to faults.drain_timeout_s (120) then reported by pod and PDB; revert uncordons",
    },
    StepDoc {
        keywords: &["When"],
        pattern: "node {string} is drained within {duration}",
        example: "node \"dirqual1\" is drained within 30 seconds",
        summary: "as above, with the timeout for blocked evictions in the step",
    },
    StepDoc {
        keywords: &["When"],
        pattern: "node {string} is uncordoned",
        example: "node \"dirqual1\" is uncordoned",
        summary: "reverts this scenario's drain of the node now",
    },
    StepDoc {
        keywords: &["When"],
        pattern: "{int}[%] pod(s)|of the pods of {deployment|statefulset} {string} [in namespace \
                  {string}] is|are killed [immediately]",
        example: "1 pod of deployment \"fastapi\" is killed",
        summary: "fault pod-kill: deletes pods picked with the run's seed (\"immediately\": \
                  grace 0); nothing to revert",
    },
    StepDoc {
        keywords: &["When"],
        pattern: "{int}[%] pod(s)|of the pods matching {string} in namespace {string} is|are \
                  killed [immediately]",
        example: "50% of the pods matching \"app=fastapi\" in namespace \"openalex\" are killed immediately",
        summary: "fault pod-kill by label selector (key=value terms)",
    },
    StepDoc {
        keywords: &["When"],
        pattern: "the database {string} [in namespace {string}] is unavailable",
        example: "the database \"postgresql\" is unavailable",
        summary: "fault workload-outage: scales the StatefulSet to 0; revert scales it back",
    },
    StepDoc {
        keywords: &["When"],
        pattern: "the {deployment|statefulset} {string} [in namespace {string}] is unavailable",
        example: "the deployment \"fastapi\" in namespace \"openalex\" is unavailable",
        summary: "fault workload-outage: scales it to 0; revert scales it back",
    },
    StepDoc {
        keywords: &["When"],
        pattern: "the {database|deployment|statefulset} {string} [in namespace {string}] is \
                  available again",
        example: "the database \"postgresql\" is available again",
        summary: "reverts this scenario's outage of it now",
    },
    StepDoc {
        keywords: &["When"],
        pattern: "the pods of {string} in namespace {string} are isolated from the network",
        example: "the pods of \"app=postgresql\" in namespace \"openalex\" are isolated from the network",
        summary: "fault network-isolation: a NetworkPolicy denying them all ingress; revert \
                  deletes it",
    },
    StepDoc {
        keywords: &["When"],
        pattern: "the pods of {string} in namespace {string} are reconnected to the network",
        example: "the pods of \"app=postgresql\" in namespace \"openalex\" are reconnected to the network",
        summary: "reverts this scenario's isolation of them now",
    },
    StepDoc {
        keywords: &["When"],
        pattern: "the injected faults are reverted",
        example: "the injected faults are reverted",
        summary: "reverts every fault of this scenario now (else the scenario's end does)",
    },
    StepDoc {
        keywords: &["When", "Then"],
        pattern: "the harness waits {int} seconds",
        example: "the harness waits 30 seconds",
        summary: "sleeps, at most 600 s (game days, kill tests)",
    },
    // Disaster recovery with Velero (steps/dr.rs).
    StepDoc {
        keywords: GIVEN,
        pattern: "the drill scenario {string}",
        example: "the drill scenario \"scenarios/velero-dr.yaml\"",
        summary: "the DR drill's parameters (namespaces, markers, API check, deadlines); \
                  without it the defaults, which are that file's",
    },
    StepDoc {
        keywords: GIVEN,
        pattern: "markers are being written [every {duration}]",
        example: "markers are being written every 1 second",
        summary: "a marker row into PostgreSQL (psql exec) and a ConfigMap per interval, \
                  until the disaster; waits for the first",
    },
    StepDoc {
        keywords: &["When"],
        pattern: "a Velero backup of the drill's namespaces completes",
        example: "a Velero backup of the drill's namespaces completes",
        summary: "pre-checks (BackupStorageLocation Available, a marker written, the API \
                  serving), then a Backup (or one from the scenario's Schedule) until \
                  Completed; measures backup_s",
    },
    StepDoc {
        keywords: &["When"],
        pattern: "the drill's namespaces are deleted",
        example: "the drill's namespaces are deleted",
        summary: "the disaster: deletes the namespaces (and retained volumes); only after a \
                  Completed backup holding them, and on a cluster only with its opt-in \
                  (fault `disaster`); journaled",
    },
    StepDoc {
        keywords: &["When"],
        pattern: "the drill's backup is restored",
        example: "the drill's backup is restored",
        summary: "a Velero Restore of the drill's backup until Completed (PartiallyFailed or \
                  Failed fails, with Velero's status); measures restore_s",
    },
    StepDoc {
        keywords: THEN,
        pattern: "the API serves correct data again [within LIMIT]",
        example: "the API serves correct data again within 30 minutes",
        summary: "waits for the workloads and /works/<id>, then checks works and markers; \
                  measures rto_s, rpo_s, markers_*; criterion markers_after_backup_present",
    },
    StepDoc {
        keywords: THEN,
        pattern: "the backup completes within LIMIT",
        example: "the backup completes within the profile's dr.backup_s",
        summary: "criterion backup_s",
    },
    StepDoc {
        keywords: THEN,
        pattern: "the restore completes within LIMIT",
        example: "the restore completes within 30 minutes",
        summary: "criterion restore_s",
    },
    StepDoc {
        keywords: THEN,
        pattern: "[the] RTO is at most LIMIT",
        example: "the RTO is at most the profile's dr.rto_s",
        summary: "criterion rto_s: disaster to the API serving correct data again",
    },
    StepDoc {
        keywords: THEN,
        pattern: "[the] RPO is at most LIMIT",
        example: "RPO is at most 24 hours",
        summary: "criterion rpo_s: disaster minus the newest marker present after the restore",
    },
    StepDoc {
        keywords: THEN,
        pattern: "no data written before the backup is lost",
        example: "no data written before the backup is lost",
        summary: "criteria markers_lost_before_backup (0) and works_count (the scenario's)",
    },
    StepDoc {
        keywords: THEN,
        pattern: "the Velero schedule {string} is configured as: (table: key | value)",
        example: "the Velero schedule \"daily-openalex\" is configured as:",
        summary: "keys schedule, namespaces, snapshotVolumes, ttl; criteria \
                  velero_schedule_{exists,enabled,cron,namespaces,snapshot_volumes,ttl_h}",
    },
    StepDoc {
        keywords: THEN,
        pattern: "the newest backup of the Velero schedule {string} is Completed and at most \
                  LIMIT old",
        example: "the newest backup of the Velero schedule \"daily-openalex\" is Completed and at most 26 hours old",
        summary: "criteria velero_schedule_backup_completed, velero_schedule_backup_age_h; \
                  waits up to dr.schedule_backup_wait_s (60) for one in progress",
    },
    // Phase checks (steps/{ceph,http,observability,platform}.rs). LIMIT: inline
    // (`60 seconds`, `15 days`) or `the profile's KEY` (unit from the key's suffix).
    StepDoc {
        keywords: GIVEN,
        pattern: "the documented stack is applied",
        example: "the documented stack is applied",
        summary: "applies --stack once per run, waits for its workloads, then up to \
                  stack.settle_s for operator-reported health; what is not ready is left to \
                  the checks (measure stack_not_ready)",
    },
    StepDoc {
        keywords: THEN,
        pattern: "the Ceph cluster reports HEALTH_OK",
        example: "the Ceph cluster reports HEALTH_OK",
        summary: "`ceph status` in the toolbox; criterion ceph_health (0 OK, 1 WARN, 2 ERR)",
    },
    StepDoc {
        keywords: THEN,
        pattern: "Ceph reports HEALTH_OK|HEALTH_WARN|HEALTH_ERR [and every placement group is \
                  active+clean] within LIMIT",
        example: "Ceph reports HEALTH_OK and every placement group is active+clean within the profile's chaos.osd.recovery_s",
        summary: "polls `ceph status` every ceph.poll_ms (1000) from the scenario's latest \
                  fault injection or revert; criterion ceph_health_ok[_clean]_s",
    },
    StepDoc {
        keywords: THEN,
        pattern: "Ceph never reported HEALTH_ERR during the scenario",
        example: "Ceph never reported HEALTH_ERR during the scenario",
        summary: "the worst Ceph health the load's health recorder read (every 2 s); never \
                  read fails; criterion ceph_never_health_err",
    },
    StepDoc {
        keywords: THEN,
        pattern: "every OSD is up and in",
        example: "every OSD is up and in",
        summary: "`ceph status` OSD map; criteria osds_up, osds_in",
    },
    StepDoc {
        keywords: THEN,
        pattern: "every placement group is active+clean",
        example: "every placement group is active+clean",
        summary: "`ceph status` PG states (scrubbing allowed, remapped not); criterion \
                  pgs_active_clean; no PG list is a failure",
    },
    StepDoc {
        keywords: THEN,
        pattern: "the CephCluster {string} in namespace {string} reports HEALTH_OK",
        example: "the CephCluster \"rook-ceph\" in namespace \"rook-ceph\" reports HEALTH_OK",
        summary: "status.ceph.health (not status.phase); criterion cephcluster_health[NS/NAME]",
    },
    StepDoc {
        keywords: THEN,
        pattern: "pool {string} is replicated {int} times [on device class {string}]",
        example: "pool \"nvme-pool\" is replicated 2 times on device class \"nvme\"",
        summary: "Ceph's pool size (`osd pool ls detail`) and the CephBlockPool's device class; \
                  criteria pool_size[POOL], pool_device_class[POOL]",
    },
    StepDoc {
        keywords: THEN,
        pattern: "a {size} claim on storage class {string} is bound within LIMIT [and cleaned up \
                  within LIMIT]",
        example: "a 1Gi claim on storage class \"ceph-nvme\" is bound within the profile's storage.claim_bind_s and cleaned up within the profile's storage.claim_cleanup_s",
        summary: "a probe PVC in namespace default, deleted whatever happens; criteria \
                  claim_bound_s[CLASS], claim_cleanup_s[CLASS]",
    },
    StepDoc {
        keywords: THEN,
        pattern: "a TLS handshake with the API host succeeds with a certificate for that name",
        example: "a TLS handshake with the API host succeeds with a certificate for that name",
        summary: "SNI = the HTTPProxy's fqdn, CA = its TLS secret's ca.crt (else system roots); \
                  criteria tls_handshake[HOST], tls_certificate_name[HOST]",
    },
    StepDoc {
        keywords: THEN,
        pattern: "the API answers {path} with status {int}",
        example: "the API answers \"/health\" with status 200",
        summary: "one GET through Envoy's load balancer; criterion api_status[PATH]",
    },
    StepDoc {
        keywords: THEN,
        pattern: "{int} requests to {path} within one second from one address get at least \
                  one|no 429",
        example: "150 requests to \"/health\" within one second from one address get at least one 429",
        summary: "a burst (at most 1000) started at a wall-clock second; criterion \
                  rate_limited[N in 1 s]",
    },
    StepDoc {
        keywords: THEN,
        pattern: "every Prometheus target of these jobs is up: (table of job names)",
        example: "every Prometheus target of these jobs is up:",
        summary: "/api/v1/targets via the service proxy; criterion prometheus_targets_up[JOB] \
                  (a job without targets fails)",
    },
    StepDoc {
        keywords: THEN,
        pattern: "Prometheus|Loki's retention is LIMIT",
        example: "Prometheus's retention is the profile's observability.prometheus_retention_d",
        summary: "Prometheus flags / Loki /config (retention_period, only when the compactor \
                  enforces it); criteria prometheus_retention_d, loki_retention_d",
    },
    StepDoc {
        keywords: THEN,
        pattern: "Loki has log lines younger than LIMIT from every namespace of: (table)",
        example: "Loki has log lines younger than 5 minutes from every namespace of:",
        summary: "query_range {namespace=\"NS\"}; criterion loki_lines[NS]",
    },
    StepDoc {
        keywords: THEN,
        pattern: "Loki has log lines younger than LIMIT from the pods of these statefulsets in \
                  namespace {string}: (table)",
        example: "Loki has log lines younger than 5 minutes from the pods of these statefulsets in namespace \"openalex\":",
        summary: "query_range {namespace=\"NS\", pod=~\"SET-[0-9]+\"}; criterion loki_lines[NS/SET]",
    },
    StepDoc {
        keywords: THEN,
        pattern: "Grafana has these dashboards: (table of titles)",
        example: "Grafana has these dashboards:",
        summary: "/api/search; criterion grafana_dashboard[TITLE]",
    },
    StepDoc {
        keywords: THEN,
        pattern: "Thanos returns {string} data older than Prometheus's retention",
        example: "Thanos returns \"up\" data older than Prometheus's retention",
        summary: "instant query at Prometheus's retention + 1 day; criterion \
                  thanos_history_series[QUERY]",
    },
    StepDoc {
        keywords: THEN,
        pattern: "a pod in namespace {string} resolves {string}",
        example: "a pod in namespace \"openalex\" resolves \"fastapi.openalex.svc.cluster.local\"",
        summary: "nslookup (else getent hosts) by exec in a Ready pod; a Service name must give \
                  its ClusterIP; criterion dns_resolves[NAME]",
    },
    StepDoc {
        keywords: THEN,
        pattern: "the {kind} {string} [in namespace {string}] is Ready",
        example: "the Certificate \"openalex-api-tls\" in namespace \"openalex\" is Ready",
        summary: "its Ready condition is True; criterion KIND_ready[[NS/]NAME]",
    },
    StepDoc {
        keywords: THEN,
        pattern: "every Flux Kustomization is Ready and not suspended",
        example: "every Flux Kustomization is Ready and not suspended",
        summary: "criteria flux_kustomizations_ready, flux_kustomizations_suspended",
    },
    StepDoc {
        keywords: THEN,
        pattern: "the backup storage location {string} in namespace {string} is Available",
        example: "the backup storage location \"default\" in namespace \"velero\" is Available",
        summary: "Velero's status.phase; criterion bsl_available[NS/NAME]",
    },
    StepDoc {
        keywords: THEN,
        pattern: "every PVC in namespace {string} is Bound on a Rook storage class",
        example: "every PVC in namespace \"openalex\" is Bound on a Rook storage class",
        summary: "class provisioner *.rbd.csi.ceph.com / *.cephfs.csi.ceph.com; criterion \
                  pvcs_on_rook[NS]",
    },
    StepDoc {
        keywords: THEN,
        pattern: "every image of namespace {string} has a vulnerability scan in Harbor",
        example: "every image of namespace \"openalex\" has a vulnerability scan in Harbor",
        summary: "each pod image's artifact with_scan_overview; criterion images_scanned[NS]",
    },
    StepDoc {
        keywords: THEN,
        pattern: "a pod with image {string} is denied|admitted in namespace {string}",
        example: "a pod with image \"nginx\" is denied in namespace \"openalex\"",
        summary: "server-side dry run (dryRun=All): 403 is denied, another refusal fails; \
                  criterion admission_denied|admitted[NS IMAGE]",
    },
    StepDoc {
        keywords: THEN,
        pattern: "every OSD is up and in within LIMIT",
        example: "every OSD is up and in within the profile's chaos.osd.recovery_s",
        summary: "polls `ceph status` every ceph.poll_ms, timed from the latest fault change; \
                  criterion osds_up_in_s",
    },
    StepDoc {
        keywords: THEN,
        pattern: "Ceph marks OSD {int} down|out within LIMIT",
        example: "Ceph marks OSD 0 out within the profile's chaos.osd.out_s",
        summary: "polls `ceph osd tree` (status down; reweight 0 = out) every ceph.poll_ms, \
                  timed from the latest fault change; criterion osd_down|out_s[osd.N]",
    },
    StepDoc {
        keywords: THEN,
        pattern: "pod {string} in namespace {string} cannot be evicted",
        example: "pod \"postgresql-0\" in namespace \"openalex\" cannot be evicted",
        summary: "server-side dry-run eviction: passes on 429 from a PodDisruptionBudget; \
                  criterion eviction_refused[NS/POD]",
    },
    StepDoc {
        keywords: &["When"],
        pattern: "the game-day scenario {string} is run",
        example: "the game-day scenario \"pod-kill\" is run",
        summary: "runs scenarios/NAME.yaml unattended (no questions): its load, faults, \
                  waits and recovery, with their criteria; timeline in gameday-NAME.md",
    },
];

/// The regexes cucumber registered for the World, by step type.
fn registered() -> &'static [(StepType, Regex)] {
    static REGISTERED: LazyLock<Vec<(StepType, Regex)>> = LazyLock::new(|| {
        let mut out = Vec::new();
        for s in inventory::iter::<<World as WorldInventory>::Given> {
            out.push((StepType::Given, (s.inner().1)()));
        }
        for s in inventory::iter::<<World as WorldInventory>::When> {
            out.push((StepType::When, (s.inner().1)()));
        }
        for s in inventory::iter::<<World as WorldInventory>::Then> {
            out.push((StepType::Then, (s.inner().1)()));
        }
        out
    });
    &REGISTERED
}

/// Whether a step definition of this type matches `text`.
pub fn is_known(ty: StepType, text: &str) -> bool {
    registered()
        .iter()
        .any(|(t, re)| *t == ty && re.is_match(text))
}

pub fn keyword(ty: StepType) -> &'static str {
    match ty {
        StepType::Given => "Given",
        StepType::When => "When",
        StepType::Then => "Then",
    }
}

/// The known steps closest to `text` by the words they share, as `` `Keyword example` ``
/// (the step's own keyword when the definition takes it), at most `limit`.
pub fn closest_known(ty: StepType, text: &str, limit: usize) -> Vec<String> {
    similar::by_shared_words(text, CATALOG.iter().map(|d| d.example), limit)
        .into_iter()
        .filter_map(|best| {
            let doc = CATALOG.iter().find(|d| d.example == best)?;
            let kw = if doc.keywords.contains(&keyword(ty)) {
                keyword(ty)
            } else {
                doc.keywords[0]
            };
            Some(format!("`{kw} {best}`"))
        })
        .collect()
}

/// What to say after an unknown step: the closest known ones, or where the list is.
pub fn suggestion(ty: StepType, text: &str) -> String {
    let close = closest_known(ty, text, 3);
    match close.split_first() {
        None => "no known step shares a word with it; `stormdrill steps` lists them".into(),
        Some((first, [])) => format!("closest known step: {first}"),
        Some((first, rest)) => format!("closest known step: {first} (or {})", rest.join(", ")),
    }
}

/// For a scenario cucumber skipped: the first step no definition matches, and the
/// closest known step, e.g. ``unknown step `Then every nodes are Ready`; closest known
/// step: `Then every node is Ready` ``.
pub fn unknown_step_hint(
    feature: &gherkin::Feature,
    rule: Option<&gherkin::Rule>,
    scenario: &gherkin::Scenario,
) -> Option<String> {
    let background = feature
        .background
        .iter()
        .chain(rule.and_then(|r| r.background.as_ref()))
        .flat_map(|b| &b.steps);
    let step = background
        .chain(&scenario.steps)
        .find(|s| !is_known(s.ty, &s.value))?;
    Some(format!(
        "unknown step `{} {}`; {}",
        keyword(step.ty),
        step.value,
        suggestion(step.ty, &step.value)
    ))
}

/// Text of `stormdrill steps`.
pub fn describe_catalog() -> String {
    let mut out = String::new();
    for d in CATALOG {
        out.push_str(&format!(
            "{} {}\n    {}\n    e.g. {} {}\n",
            d.keywords.join("|"),
            d.pattern,
            d.summary,
            // Checks read best as Then; Given-only steps keep Given.
            d.keywords.last().unwrap_or(&"Given"),
            d.example
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step_type(kw: &str) -> StepType {
        match kw {
            "Given" => StepType::Given,
            "When" => StepType::When,
            "Then" => StepType::Then,
            other => panic!("unknown keyword {other}"),
        }
    }

    #[test]
    fn every_example_matches_exactly_one_definition_per_keyword() {
        for d in CATALOG {
            for kw in d.keywords {
                let ty = step_type(kw);
                let n = registered()
                    .iter()
                    .filter(|(t, re)| *t == ty && re.is_match(d.example))
                    .count();
                assert_eq!(n, 1, "`{kw} {}` matches {n} definitions", d.example);
            }
        }
        assert!(is_known(
            StepType::Then,
            "the cluster-scoped namespace \"x\" exists"
        ));
        assert!(is_known(
            StepType::Then,
            "the Deployments \"x\" exists in namespace \"y\""
        ));
    }

    #[test]
    fn every_definition_is_documented() {
        for (ty, re) in registered() {
            let documented = CATALOG
                .iter()
                .any(|d| d.keywords.contains(&keyword(*ty)) && re.is_match(d.example));
            assert!(
                documented,
                "{} {} has no catalog entry",
                keyword(*ty),
                re.as_str()
            );
        }
    }

    #[test]
    fn unknown_steps_get_the_closest_known_one() {
        let feature = gherkin::Feature::parse(
            "Feature: f\n  Scenario: s\n    Given the cluster is reachable\n    \
             Then every nodes are Ready\n",
            gherkin::GherkinEnv::default(),
        )
        .unwrap();
        let hint = unknown_step_hint(&feature, None, &feature.scenarios[0]).unwrap();
        assert!(
            hint.starts_with(
                "unknown step `Then every nodes are Ready`; closest known step: \
                 `Then every node is Ready`"
            ),
            "{hint}"
        );
        let moon = suggestion(StepType::Given, "the moon is made of cheese");
        assert!(moon.starts_with("no known step shares a word"), "{moon}");
    }
}
