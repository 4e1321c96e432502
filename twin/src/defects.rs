//! Defects: named misconfigurations and weaknesses of the documented stack
//! (`TwinOptions::defects`, `--defect NAME`), so that every check of the harness can
//! be shown to FAIL when it should. A defect never fakes an answer: it changes what
//! is deployed, as a wrong manifest or a broken component would, and the twin's
//! simulated operators, data plane and tools then behave as the stack would.
//!
//! How each is realised ([`catalog`] has the one-line summaries):
//!
//! - By an admission-time mutation of the applied objects (a mutating plugin after
//!   the twin's own, see [`install`]; it applies on create and update, so a
//!   re-apply gets the same result):
//!   - `velero-ttl-wrong`: Schedules in `velero` get `spec.template.ttl: 24h0m0s`;
//!     `velero-schedule-paused`: `spec.paused: true`; `velero-schedule-weekly`:
//!     `spec.schedule: 0 2 * * 0`; `velero-no-volume-snapshots`:
//!     `spec.template.snapshotVolumes: false`; `velero-namespace-missing`:
//!     `rook-ceph` removed from `spec.template.includedNamespaces`.
//!   - `rate-limit-too-low`: ConfigMap `projectcontour/contour-ratelimit`'s
//!     `requests_per_unit: 100` becomes 40; the data plane reads its limit there.
//!   - `bsl-unavailable`: BackupStorageLocations in `velero` get
//!     `spec.config.s3Url: http://rook-ceph-rgw-my-store.rook-ceph.svc:80` (the
//!     Rook example's store name; no such Service), so Velero reports Unavailable.
//!   - `pool-size-1` / `nvme-pool-size-3`: CephBlockPool `rook-ceph/nvme-pool` gets
//!     `spec.replicated.size` 1 (with `requireSafeReplicaSize: false`, as Rook
//!     requires for size 1) / 3; the Rook operator sizes the Ceph pool from it.
//!   - `api-single-replica`: Deployment `openalex/fastapi` gets `spec.replicas: 1`.
//!   - `api-no-prestop`: Deployment `openalex/fastapi`'s containers lose `lifecycle`
//!     (the preStop sleep); the data plane then fails requests Envoy still sends to a
//!     terminating pod (see `dataplane`).
//!   - `no-rate-limit`: HTTPProxy `openalex/openalex-api` loses every route's
//!     `rateLimitPolicy`; the data plane then applies no limit.
//!   - `prometheus-target-down`: the `exporter` container of StatefulSet
//!     `openalex/postgresql` gets `--web.listen-address=:9188` while declaring 9187:
//!     its pods' port 9187 refuses connections, so the `postgres-exporter` target is
//!     down (`connection refused`).
//!   - `no-loki-logs`: DaemonSet `monitoring/promtail` gets
//!     `-client.url=http://loki-gateway.monitoring.svc.cluster.local/loki/api/v1/push`
//!     (no such Service): Promtail ships nothing and Loki has no streams.
//!   - `missing-dashboard`: ConfigMap `monitoring/dashboard-ceph-cluster` loses its
//!     `grafana_dashboard` label: Grafana's sidecar never provisions it.
//!   - `gatekeeper-absent`: K8sDisallowedTags constraints get
//!     `spec.enforcementAction: dryrun`: Gatekeeper only audits, nothing is denied
//!     at admission (as without Gatekeeper's webhook).
//!   - `flux-not-ready`: Kustomization `flux-system/apps` gets an extra
//!     `dependsOn: apps-secrets`, a Kustomization that does not exist, so Flux keeps
//!     it `Ready=False` (DependencyNotReady).
//!   - `hdd-pool-on-nvme`: CephBlockPool `rook-ceph/hdd-pool` gets
//!     `spec.deviceClass: nvme`; the Rook operator places the pool on the NVMe OSDs.
//!   - `hdd-class-retain`: StorageClass `ceph-hdd` gets `reclaimPolicy: Retain`.
//!   - `db-on-local-path`: StatefulSet `openalex/neo4j`'s claim templates get
//!     `storageClassName: standard`; [`run`] creates that class as kind ships it
//!     (`rancher.io/local-path`, WaitForFirstConsumer), a provisioner without a Rook
//!     backend.
//!   - `cert-wrong-host`: Certificate `openalex/openalex-api-tls` gets
//!     `spec.dnsNames: [api-staging.openalex.univ-lehavre.fr]`; cert-manager issues
//!     for that name and Envoy serves it for the API host.
//!   - `prometheus-retention-default`: Prometheus `monitoring/k8s` loses
//!     `spec.retention`; the operator starts Prometheus with its default (24h).
//!   - `loki-retention-short`: ConfigMap `monitoring/loki-config` gets
//!     `retention_period: 168h`.
//!   - `flux-suspended`: Kustomization `flux-system/infrastructure` gets
//!     `spec.suspend: true`.
//!   - `no-velero-schedule`: Schedules in `velero` are admitted paused (so Velero
//!     never backs up from them) and then deleted by [`run`] right after creation,
//!     as if GitOps never applied them (the API cannot refuse an apply silently).
//! - By deletion right after creation ([`run`]): `no-velero-schedule` (above),
//!   `db-no-pdb` (PodDisruptionBudget `openalex/postgresql`) and `no-thanos-query`
//!   (Service `monitoring/thanos-query`).
//! - By a change right after creation ([`run`]; for objects the twin bootstraps
//!   before any admission plugin runs): `coredns-unreachable` (Service
//!   `kube-system/kube-dns` gets the selector `k8s-app: coredns`; the endpoints
//!   controller then finds no pod and the resolver no server).
//! - By behaviour: `cert-not-ready` (cert-manager's ACME order for a Certificate of
//!   an ACME issuer fails: `Ready=False` with the ACME error, no Secret; see
//!   [`certificate_failure`]), `slow-osd-recovery` (the Ceph model's
//!   `recovery_objects_per_sec` divided by 200, set by [`run`] once the Rook operator
//!   created the cluster), `ceph-noout-set` (the Ceph model's `noout` flag, set by
//!   [`run`] once, as `ceph osd set noout` would), `unscanned-image` (Harbor's `openalex` project has
//!   `auto_scan` off and the `openalex/fastapi` artifacts carry no scan overview;
//!   see `stack::harbor`), `api-no-db-reconnect` (each API pod keeps the database
//!   connection it opened first; once that database process is gone — pod replaced
//!   or container restarted — the pod's requests fail with psycopg's
//!   `server closed the connection unexpectedly` until the pod restarts; see
//!   `dataplane`), `works-index-missing` (the data plane's `/works` list service time
//!   times `dataplane::SEQ_SCAN_FACTOR`).
//! - Through the `ceph` CLI once the cluster exists ([`run`]; the same commands on the
//!   model and on a real cluster): `osd-left-out` (`ceph osd out 0`; an NVMe OSD, so
//!   nvme-pool's two copies still find two hosts), `ceph-alerts-muted` (`ceph health mute CODE
//!   --sticky` for each of [`MUTED_ALERTS`]), `osd-heartbeat-grace-long` (`ceph config
//!   set osd osd_heartbeat_grace` to [`LONG_GRACE_FACTOR`] times its value).

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::watch;

use crate::api::Api;
use crate::ctx::{obj, reconcile_loop, Ctx};

/// Every defect: (name, what it breaks).
const CATALOG: &[(&str, &str)] = &[
    ("no-velero-schedule", "The Velero Schedule is never applied (the twin deletes it right after creation): no daily backups are taken."),
    ("velero-ttl-wrong", "The Velero Schedule keeps backups 24 h instead of the documented 168 h."),
    ("velero-schedule-paused", "The Velero Schedule is paused (left so after a maintenance): it exists, but no backup is taken."),
    ("velero-schedule-weekly", "The Velero Schedule runs weekly (0 2 * * 0) instead of daily."),
    ("velero-namespace-missing", "The Velero Schedule backs up openalex only: rook-ceph (the Rook objects the restore of the volumes needs) is left out."),
    ("rate-limit-too-low", "The rate limit service allows 40 requests per second per address instead of 100: ordinary clients get 429s."),
    ("osd-left-out", "osd.0 was marked out for a maintenance and never marked back in: Ceph is HEALTH_OK on five OSDs, the sixth holds no data."),
    ("velero-no-volume-snapshots", "The Velero Schedule does not snapshot volumes (snapshotVolumes: false)."),
    ("bsl-unavailable", "The Velero BackupStorageLocation points at an object store Service that does not exist, so it is Unavailable and backups fail."),
    ("pool-size-1", "CephBlockPool nvme-pool keeps a single replica (size 1): no redundancy, one lost OSD loses data."),
    ("nvme-pool-size-3", "CephBlockPool nvme-pool keeps three replicas instead of the documented two."),
    ("api-single-replica", "Deployment fastapi runs one replica instead of three."),
    ("no-rate-limit", "HTTPProxy openalex-api has no rate limit policy: no 429s whatever the request rate."),
    ("cert-not-ready", "cert-manager's ACME order for the API host fails: Certificate openalex-api-tls stays Ready=False and no TLS secret is issued."),
    ("prometheus-target-down", "The postgres exporter listens on another port than the one it declares, so its Prometheus target is down."),
    ("no-loki-logs", "Promtail pushes to a Loki Service that does not exist, so Loki holds no log streams."),
    ("missing-dashboard", "The Ceph cluster dashboard ConfigMap lacks the grafana_dashboard label, so Grafana never provisions it."),
    ("gatekeeper-absent", "The Gatekeeper constraint only audits (enforcementAction dryrun): images without a tag are admitted."),
    ("flux-not-ready", "Kustomization apps depends on a Kustomization that does not exist, so it stays Ready=False."),
    ("slow-osd-recovery", "Ceph recovers and backfills 200 times slower than normal (a throttle such as osd_recovery_sleep left high)."),
    ("db-no-pdb", "The postgresql PodDisruptionBudget is not applied (the twin deletes it right after creation): nothing protects the database from eviction."),
    ("unscanned-image", "Harbor's openalex project has scan-on-push off, so the fastapi image has no Trivy scan report."),
    ("coredns-unreachable", "The kube-dns Service selects k8s-app=coredns, a label the CoreDNS pods lack: it has no endpoints, so no cluster name resolves."),
    ("ceph-noout-set", "The noout flag was left set after maintenance: Ceph reports HEALTH_WARN (OSDMAP_FLAGS) and would never mark a dead OSD out."),
    ("hdd-pool-on-nvme", "CephBlockPool hdd-pool names device class nvme: the bulk data pool fills the NVMe devices."),
    ("hdd-class-retain", "StorageClass ceph-hdd has reclaim policy Retain: deleted claims leave their volumes behind."),
    ("db-on-local-path", "StatefulSet neo4j claims its volume on kind's node-local StorageClass standard (rancher.io/local-path, added by the defect), not on Rook."),
    ("cert-wrong-host", "Certificate openalex-api-tls is issued for the staging host api-staging.openalex.univ-lehavre.fr: clients of the API host reject it."),
    ("prometheus-retention-default", "Prometheus k8s sets no retention, so prometheus-operator's default applies: 24 h of metrics instead of 15 d."),
    ("loki-retention-short", "Loki's retention_period is 168h: logs are kept 7 days instead of 30."),
    ("flux-suspended", "Kustomization infrastructure is suspended: changes to it in Git are no longer applied."),
    ("no-thanos-query", "The thanos-query Service is never applied (the twin deletes it right after creation): nothing answers for metrics older than Prometheus's retention."),
    ("ceph-alerts-muted", "Sticky mutes left from a past maintenance silence OSD_DOWN, OSD_HOST_DOWN, PG_DEGRADED and PG_AVAILABILITY: Ceph reports HEALTH_OK while an OSD is down."),
    ("osd-heartbeat-grace-long", "osd_heartbeat_grace is four times Ceph's default: when a host vanishes, I/O to its OSDs' placement groups blocks four times longer before Ceph marks them down."),
    ("works-index-missing", "The works table lost the index its list query orders by (a migration dropped it): every /works page is a sequential scan, ~150 times slower."),
    ("api-no-prestop", "Deployment fastapi has no preStop sleep: a deleted pod stops listening while Envoy still sends it requests, which fail with 503."),
    ("api-no-db-reconnect", "The API opens its database connection once at start and never reconnects: after the database restarts every request fails until the API pods are restarted."),
];

/// The health checks `ceph-alerts-muted` mutes (`ceph health mute CODE --sticky`).
pub const MUTED_ALERTS: &[&str] = &[
    "OSD_DOWN",
    "OSD_HOST_DOWN",
    "PG_DEGRADED",
    "PG_AVAILABILITY",
];

/// `osd_heartbeat_grace` is multiplied by this under `osd-heartbeat-grace-long`.
pub const LONG_GRACE_FACTOR: f64 = 4.0;

/// Defects that cannot be combined (they set the same field).
const CONFLICTS: &[(&str, &str)] = &[("pool-size-1", "nvme-pool-size-3")];

/// Every defect the twin knows: (name, one sentence on what it breaks).
pub fn catalog() -> &'static [(&'static str, &'static str)] {
    CATALOG
}

/// Same as [`catalog`].
pub fn defects() -> &'static [(&'static str, &'static str)] {
    CATALOG
}

/// The StorageClass `db-on-local-path` adds and points neo4j at (kind's default).
pub const LOCAL_PATH_CLASS: &str = "standard";
/// The name `cert-wrong-host` issues the API's certificate for.
pub const WRONG_HOST: &str = "api-staging.openalex.univ-lehavre.fr";

/// The Ceph recovery rate is divided by this under `slow-osd-recovery`.
pub const SLOW_RECOVERY_FACTOR: f64 = 200.0;

/// The defects a twin runs with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Defects(BTreeSet<String>);

/// Why a set of defect names was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DefectError {
    #[error("unknown defect {name:?}; known defects: {}", known.join(", "))]
    Unknown { name: String, known: Vec<String> },
    #[error("defects {0:?} and {1:?} cannot be combined")]
    Conflict(String, String),
}

impl Defects {
    /// Checks every name against the catalog.
    pub fn new<S: AsRef<str>>(names: &[S]) -> Result<Defects, DefectError> {
        let mut set = BTreeSet::new();
        for n in names {
            let n = n.as_ref().trim();
            if !CATALOG.iter().any(|(k, _)| *k == n) {
                return Err(DefectError::Unknown {
                    name: n.to_string(),
                    known: CATALOG.iter().map(|(k, _)| k.to_string()).collect(),
                });
            }
            set.insert(n.to_string());
        }
        for (a, b) in CONFLICTS {
            if set.contains(*a) && set.contains(*b) {
                return Err(DefectError::Conflict(a.to_string(), b.to_string()));
            }
        }
        Ok(Defects(set))
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.contains(name)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

/// Installs the defects' mutating admission plugin (nothing without defects).
pub fn install(api: &Api, ctx: &Ctx) {
    if ctx.defects.is_empty() {
        return;
    }
    let defects = ctx.defects.clone();
    api.add_admission(Arc::new(move |req, o| {
        mutate(&defects, &req.info.group, &req.info.plural, o);
        Ok(())
    }));
}

fn at(o: &Value, group_plural: (&str, &str), want: (&str, &str, Option<&str>)) -> bool {
    group_plural.0 == want.0 && group_plural.1 == want.1 && want.2.is_none_or(|n| obj::name(o) == n)
}

/// The admission-time part of the defects as a real kube-apiserver's mutating
/// webhook: answers an `AdmissionReview` (admission.k8s.io/v1) with the JSON Patch
/// that turns the object into what [`mutate`] makes of it (none when unchanged).
pub fn review(d: &Defects, review: &Value) -> Value {
    use base64::Engine as _;
    let request = &review["request"];
    let group = obj::str_at(request, "/resource/group").unwrap_or("");
    let plural = obj::str_at(request, "/resource/resource").unwrap_or("");
    let object = request.get("object").cloned().unwrap_or(Value::Null);
    let mut mutated = object.clone();
    mutate(d, group, plural, &mut mutated);
    let patch = json_patch::diff(&object, &mutated);
    let mut response = json!({"uid": request["uid"], "allowed": true});
    if !patch.0.is_empty() {
        let bytes = serde_json::to_vec(&patch).unwrap_or_default();
        response["patchType"] = json!("JSONPatch");
        response["patch"] = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
    }
    crate::admission::review_answer(response)
}

/// The admission-time part of the defects: rewrites `o` (a `group`/`plural` object
/// being created or updated).
pub fn mutate(d: &Defects, group: &str, plural: &str, o: &mut Value) {
    if !o.is_object() {
        return;
    }
    let gp = (group, plural);
    let ns = obj::namespace(o).to_string();
    let set = |o: &mut Value, path: &[&str], v: Value| {
        let mut cur = o;
        for (i, k) in path.iter().enumerate() {
            if i + 1 == path.len() {
                cur[*k] = v;
                return;
            }
            if !cur[*k].is_object() {
                cur[*k] = json!({});
            }
            cur = &mut cur[*k];
        }
    };
    if ns == "velero" && at(o, gp, ("velero.io", "schedules", None)) {
        if d.has("velero-ttl-wrong") {
            set(o, &["spec", "template", "ttl"], json!("24h0m0s"));
        }
        if d.has("no-velero-schedule") || d.has("velero-schedule-paused") {
            set(o, &["spec", "paused"], json!(true));
        }
        if d.has("velero-schedule-weekly") {
            set(o, &["spec", "schedule"], json!("0 2 * * 0"));
        }
        if d.has("velero-no-volume-snapshots") {
            set(o, &["spec", "template", "snapshotVolumes"], json!(false));
        }
    }
    if ns == "velero"
        && d.has("bsl-unavailable")
        && at(o, gp, ("velero.io", "backupstoragelocations", None))
    {
        set(
            o,
            &["spec", "config", "s3Url"],
            json!("http://rook-ceph-rgw-my-store.rook-ceph.svc:80"),
        );
    }
    if ns == "rook-ceph" && at(o, gp, ("ceph.rook.io", "cephblockpools", Some("nvme-pool"))) {
        if d.has("pool-size-1") {
            set(o, &["spec", "replicated", "size"], json!(1));
            set(
                o,
                &["spec", "replicated", "requireSafeReplicaSize"],
                json!(false),
            );
        }
        if d.has("nvme-pool-size-3") {
            set(o, &["spec", "replicated", "size"], json!(3));
        }
    }
    if ns == "openalex"
        && d.has("api-single-replica")
        && at(o, gp, ("apps", "deployments", Some("fastapi")))
    {
        set(o, &["spec", "replicas"], json!(1));
    }
    if ns == "openalex"
        && d.has("api-no-prestop")
        && at(o, gp, ("apps", "deployments", Some("fastapi")))
    {
        if let Some(cs) = o
            .pointer_mut("/spec/template/spec/containers")
            .and_then(Value::as_array_mut)
        {
            for c in cs {
                if let Some(c) = c.as_object_mut() {
                    c.remove("lifecycle");
                }
            }
        }
    }
    if ns == "openalex"
        && d.has("no-rate-limit")
        && at(
            o,
            gp,
            ("projectcontour.io", "httpproxies", Some("openalex-api")),
        )
    {
        if let Some(routes) = o.pointer_mut("/spec/routes").and_then(Value::as_array_mut) {
            for r in routes {
                if let Some(m) = r.as_object_mut() {
                    m.remove("rateLimitPolicy");
                }
            }
        }
        if let Some(vh) = o
            .pointer_mut("/spec/virtualhost")
            .and_then(Value::as_object_mut)
        {
            vh.remove("rateLimitPolicy");
        }
    }
    if ns == "openalex"
        && d.has("prometheus-target-down")
        && at(o, gp, ("apps", "statefulsets", Some("postgresql")))
    {
        add_arg(
            o,
            "/spec/template/spec/containers",
            "exporter",
            "--web.listen-address=",
            ":9188",
        );
    }
    if ns == "monitoring"
        && d.has("no-loki-logs")
        && at(o, gp, ("apps", "daemonsets", Some("promtail")))
    {
        add_arg(
            o,
            "/spec/template/spec/containers",
            "promtail",
            "-client.url=",
            "http://loki-gateway.monitoring.svc.cluster.local/loki/api/v1/push",
        );
    }
    if ns == "monitoring"
        && d.has("missing-dashboard")
        && at(o, gp, ("", "configmaps", Some("dashboard-ceph-cluster")))
    {
        if let Some(labels) = o
            .pointer_mut("/metadata/labels")
            .and_then(Value::as_object_mut)
        {
            labels.remove("grafana_dashboard");
        }
    }
    if ns == "rook-ceph"
        && d.has("hdd-pool-on-nvme")
        && at(o, gp, ("ceph.rook.io", "cephblockpools", Some("hdd-pool")))
    {
        set(o, &["spec", "deviceClass"], json!("nvme"));
    }
    if d.has("hdd-class-retain")
        && at(
            o,
            gp,
            ("storage.k8s.io", "storageclasses", Some("ceph-hdd")),
        )
    {
        set(o, &["reclaimPolicy"], json!("Retain"));
    }
    if ns == "openalex"
        && d.has("db-on-local-path")
        && at(o, gp, ("apps", "statefulsets", Some("neo4j")))
    {
        if let Some(ts) = o
            .pointer_mut("/spec/volumeClaimTemplates")
            .and_then(Value::as_array_mut)
        {
            for t in ts {
                t["spec"]["storageClassName"] = json!(LOCAL_PATH_CLASS);
            }
        }
    }
    if ns == "openalex"
        && d.has("cert-wrong-host")
        && at(
            o,
            gp,
            ("cert-manager.io", "certificates", Some("openalex-api-tls")),
        )
    {
        set(o, &["spec", "dnsNames"], json!([WRONG_HOST]));
    }
    if ns == "monitoring"
        && d.has("prometheus-retention-default")
        && at(
            o,
            gp,
            ("monitoring.coreos.com", "prometheuses", Some("k8s")),
        )
    {
        if let Some(spec) = o.pointer_mut("/spec").and_then(Value::as_object_mut) {
            spec.remove("retention");
        }
    }
    if ns == "projectcontour"
        && d.has("rate-limit-too-low")
        && at(o, gp, ("", "configmaps", Some("contour-ratelimit")))
    {
        if let Some(text) = o
            .pointer("/data/ratelimit-config.yaml")
            .and_then(Value::as_str)
        {
            let lowered = text.replace("requests_per_unit: 100", "requests_per_unit: 40");
            set(o, &["data", "ratelimit-config.yaml"], json!(lowered));
        }
    }
    if ns == "velero"
        && d.has("velero-namespace-missing")
        && at(o, gp, ("velero.io", "schedules", None))
    {
        if let Some(list) = o
            .pointer_mut("/spec/template/includedNamespaces")
            .and_then(Value::as_array_mut)
        {
            list.retain(|n| n != "rook-ceph");
        }
    }
    if ns == "monitoring"
        && d.has("loki-retention-short")
        && at(o, gp, ("", "configmaps", Some("loki-config")))
    {
        set(o, &["data", "retention_period"], json!("168h"));
    }
    if ns == "flux-system"
        && d.has("flux-suspended")
        && at(
            o,
            gp,
            (
                "kustomize.toolkit.fluxcd.io",
                "kustomizations",
                Some("infrastructure"),
            ),
        )
    {
        set(o, &["spec", "suspend"], json!(true));
    }
    if d.has("gatekeeper-absent")
        && at(
            o,
            gp,
            ("constraints.gatekeeper.sh", "k8sdisallowedtags", None),
        )
    {
        set(o, &["spec", "enforcementAction"], json!("dryrun"));
    }
    if ns == "flux-system"
        && d.has("flux-not-ready")
        && at(
            o,
            gp,
            (
                "kustomize.toolkit.fluxcd.io",
                "kustomizations",
                Some("apps"),
            ),
        )
    {
        let deps = o
            .pointer("/spec/dependsOn")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if !deps.iter().any(|x| x["name"] == "apps-secrets") {
            let mut deps = deps;
            deps.push(json!({"name": "apps-secrets"}));
            set(o, &["spec", "dependsOn"], Value::Array(deps));
        }
    }
}

/// Sets `flag` (e.g. `--web.listen-address=`) to `value` in the args of container
/// `name` of the containers array at `pointer`.
fn add_arg(o: &mut Value, pointer: &str, name: &str, flag: &str, value: &str) {
    let Some(cs) = o.pointer_mut(pointer).and_then(Value::as_array_mut) else {
        return;
    };
    for c in cs.iter_mut().filter(|c| c["name"] == name) {
        let mut args: Vec<Value> = c["args"].as_array().cloned().unwrap_or_default();
        args.retain(|a| !a.as_str().is_some_and(|s| s.starts_with(flag)));
        args.push(json!(format!("{flag}{value}")));
        c["args"] = Value::Array(args);
    }
}

/// Deletes an object that "is never applied", unless it is already going.
fn delete_once(ctx: &Ctx, group: &str, plural: &str, ns: Option<&str>, name: &str) {
    if let Some(o) = ctx.client.get(group, plural, ns, name) {
        if !obj::is_terminating(&o) {
            let _ = ctx.client.delete(group, plural, ns, name, None);
        }
    }
}

/// What cert-manager writes on a Certificate whose ACME order fails
/// (`cert-not-ready`), or None when it issues normally.
pub fn certificate_failure(ctx: &Ctx, cert: &Value, issuer: &Value) -> Option<Value> {
    if !ctx.defects.has("cert-not-ready") || issuer.pointer("/spec/acme").is_none() {
        return None;
    }
    let host = cert
        .pointer("/spec/dnsNames/0")
        .and_then(Value::as_str)
        .unwrap_or("");
    let token = ctx.name_suffix(&format!("acme-token/{}", obj::uid(cert)));
    let order = format!(
        "{}-1-{}",
        obj::name(cert),
        1_000_000_000u64 + u64::from(token.bytes().map(u32::from).sum::<u32>()) * 7919
    );
    let message = format!(
        "The certificate request has failed to complete and will be retried: Failed to wait for order resource \"{order}\" to become ready: order is in \"invalid\" state: acme: authorization error for {host}: 403 urn:ietf:params:acme:error:unauthorized: Invalid response from http://{host}/.well-known/acme-challenge/{token}: 404"
    );
    let now = crate::api::now_rfc3339();
    let issuing = crate::operators::ready_condition(cert, "Issuing", false, "Failed", &message);
    let mut with_issuing = cert.clone();
    with_issuing["status"]["conditions"] = issuing;
    Some(json!({
        "conditions": crate::operators::ready_condition(&with_issuing, "Ready", false, "DoesNotExist", &message),
        "lastFailureTime": cert.pointer("/status/lastFailureTime").cloned().unwrap_or(json!(now)),
        "failedIssuanceAttempts": 1,
    }))
}

/// The defects' part that runs after creation: deletes what "is never applied"
/// and slows Ceph's recovery once the cluster exists.
pub async fn run(ctx: Ctx, stop: watch::Receiver<bool>) {
    if ctx.defects.is_empty() {
        return;
    }
    let mut slowed = false;
    let mut noout = false;
    let mut muted = false;
    let mut graced = false;
    let mut left_out = false;
    reconcile_loop(
        ctx,
        &[
            ("velero.io", "schedules"),
            ("policy", "poddisruptionbudgets"),
            ("ceph.rook.io", "cephclusters"),
            ("", "services"),
            ("storage.k8s.io", "storageclasses"),
        ],
        stop,
        move |ctx| {
            if ctx.defects.has("no-thanos-query") {
                delete_once(ctx, "", "services", Some("monitoring"), "thanos-query");
            }
            if ctx.defects.has("coredns-unreachable") {
                if let Some(svc) = ctx
                    .client
                    .get("", "services", Some("kube-system"), "kube-dns")
                {
                    if svc.pointer("/spec/selector/k8s-app") != Some(&json!("coredns")) {
                        let _ = ctx.client.patch(
                            "",
                            "services",
                            Some("kube-system"),
                            "kube-dns",
                            json!({"spec": {"selector": {"k8s-app": "coredns"}}}),
                        );
                    }
                }
            }
            if ctx.defects.has("db-on-local-path")
                && ctx
                    .client
                    .get("storage.k8s.io", "storageclasses", None, LOCAL_PATH_CLASS)
                    .is_none()
            {
                let _ = ctx.client.create(json!({
                    "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
                    "metadata": {"name": LOCAL_PATH_CLASS},
                    "provisioner": "rancher.io/local-path",
                    "reclaimPolicy": "Delete",
                    "volumeBindingMode": "WaitForFirstConsumer",
                }));
            }
            if ctx.defects.has("ceph-noout-set") && !noout {
                noout = ctx.ceph_backend.set_flag("noout", ctx.started.elapsed());
            }
            if ctx.defects.has("no-velero-schedule") {
                for s in ctx
                    .client
                    .list("velero.io", "schedules", Some("velero"), None)
                {
                    if !obj::is_terminating(&s) {
                        let _ = ctx.client.delete(
                            "velero.io",
                            "schedules",
                            Some("velero"),
                            obj::name(&s),
                            None,
                        );
                    }
                }
            }
            if ctx.defects.has("db-no-pdb") {
                if let Some(p) = ctx.client.get(
                    "policy",
                    "poddisruptionbudgets",
                    Some("openalex"),
                    "postgresql",
                ) {
                    if !obj::is_terminating(&p) {
                        let _ = ctx.client.delete(
                            "policy",
                            "poddisruptionbudgets",
                            Some("openalex"),
                            "postgresql",
                            None,
                        );
                    }
                }
            }
            if ctx.defects.has("slow-osd-recovery") && !slowed {
                slowed = ctx.ceph_backend.slow_recovery(SLOW_RECOVERY_FACTOR);
            }
            // The next two go through the `ceph` CLI, as an operator would: the same
            // commands work on the model and on a real cluster (`--ceph real`).
            if ctx.defects.has("ceph-alerts-muted") && !muted {
                muted = MUTED_ALERTS
                    .iter()
                    .all(|code| ceph(ctx, &["health", "mute", code, "--sticky"]).is_some());
            }
            if ctx.defects.has("osd-left-out") && !left_out {
                left_out = ceph(ctx, &["osd", "out", "0"]).is_some();
            }
            if ctx.defects.has("osd-heartbeat-grace-long") && !graced {
                graced = ceph(ctx, &["config", "get", "osd", "osd_heartbeat_grace"])
                    .and_then(|out| out.trim().parse::<f64>().ok())
                    .is_some_and(|grace| {
                        let long = (grace * LONG_GRACE_FACTOR).to_string();
                        ceph(ctx, &["config", "set", "osd", "osd_heartbeat_grace", &long]).is_some()
                    });
            }
        },
    )
    .await
}

/// Runs `ceph ARGS` on the cluster's backend: its stdout, or `None` when it failed
/// (e.g. no cluster yet: the caller retries on the next pass).
fn ceph(ctx: &Ctx, args: &[&str]) -> Option<String> {
    let argv: Vec<String> = std::iter::once("ceph")
        .chain(args.iter().copied())
        .map(String::from)
        .collect();
    let out = ctx.ceph_backend.exec(&argv, None, ctx.started.elapsed());
    (out.exit_code == 0).then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(Defects::new(&["pool-size-1", "no-rate-limit"]).is_ok());
        let e = Defects::new(&["nope"]).unwrap_err().to_string();
        assert!(
            e.starts_with("unknown defect \"nope\"; known defects: no-velero-schedule, "),
            "{e}"
        );
        assert!(Defects::new(&["pool-size-1", "nvme-pool-size-3"]).is_err());
        assert_eq!(catalog().len(), 37);
    }

    #[test]
    fn mutations() {
        let d = Defects::new(&[
            "no-rate-limit",
            "api-single-replica",
            "flux-not-ready",
            "prometheus-target-down",
        ])
        .unwrap();
        let mut hp = json!({"metadata": {"name": "openalex-api", "namespace": "openalex"}, "spec": {"routes": [{"services": [], "rateLimitPolicy": {"global": {}}}]}});
        mutate(&d, "projectcontour.io", "httpproxies", &mut hp);
        assert!(hp.pointer("/spec/routes/0/rateLimitPolicy").is_none());
        let mut dep = json!({"metadata": {"name": "fastapi", "namespace": "openalex"}, "spec": {"replicas": 3}});
        mutate(&d, "apps", "deployments", &mut dep);
        assert_eq!(dep["spec"]["replicas"], 1);
        let mut k = json!({"metadata": {"name": "apps", "namespace": "flux-system"}, "spec": {"dependsOn": [{"name": "infrastructure"}]}});
        mutate(&d, "kustomize.toolkit.fluxcd.io", "kustomizations", &mut k);
        mutate(&d, "kustomize.toolkit.fluxcd.io", "kustomizations", &mut k);
        assert_eq!(k["spec"]["dependsOn"].as_array().unwrap().len(), 2);
        let mut sts = json!({"metadata": {"name": "postgresql", "namespace": "openalex"}, "spec": {"template": {"spec": {"containers": [{"name": "postgresql"}, {"name": "exporter", "args": ["--x"]}]}}}});
        mutate(&d, "apps", "statefulsets", &mut sts);
        mutate(&d, "apps", "statefulsets", &mut sts);
        assert_eq!(
            sts.pointer("/spec/template/spec/containers/1/args")
                .unwrap(),
            &json!(["--x", "--web.listen-address=:9188"])
        );
        assert!(sts
            .pointer("/spec/template/spec/containers/0/args")
            .is_none());
        let mut other = json!({"metadata": {"name": "fastapi", "namespace": "staging"}, "spec": {"replicas": 3}});
        mutate(&d, "apps", "deployments", &mut other);
        assert_eq!(other["spec"]["replicas"], 3);
    }

    #[test]
    fn phase_check_mutations() {
        let d = Defects::new(&[
            "hdd-pool-on-nvme",
            "hdd-class-retain",
            "db-on-local-path",
            "cert-wrong-host",
            "prometheus-retention-default",
            "loki-retention-short",
            "flux-suspended",
        ])
        .unwrap();
        let mut pool = json!({"metadata": {"name": "hdd-pool", "namespace": "rook-ceph"}, "spec": {"deviceClass": "hdd", "replicated": {"size": 3}}});
        mutate(&d, "ceph.rook.io", "cephblockpools", &mut pool);
        assert_eq!(pool["spec"]["deviceClass"], "nvme");
        let mut sc = json!({"metadata": {"name": "ceph-hdd"}, "provisioner": "rook-ceph.rbd.csi.ceph.com", "reclaimPolicy": "Delete"});
        mutate(&d, "storage.k8s.io", "storageclasses", &mut sc);
        assert_eq!(sc["reclaimPolicy"], "Retain");
        let mut sts = json!({"metadata": {"name": "neo4j", "namespace": "openalex"}, "spec": {"volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"storageClassName": "ceph-nvme"}}]}});
        mutate(&d, "apps", "statefulsets", &mut sts);
        assert_eq!(
            sts.pointer("/spec/volumeClaimTemplates/0/spec/storageClassName")
                .unwrap(),
            LOCAL_PATH_CLASS
        );
        let mut cert = json!({"metadata": {"name": "openalex-api-tls", "namespace": "openalex"}, "spec": {"dnsNames": ["api.openalex.univ-lehavre.fr"]}});
        mutate(&d, "cert-manager.io", "certificates", &mut cert);
        assert_eq!(cert["spec"]["dnsNames"], json!([WRONG_HOST]));
        let mut prom = json!({"metadata": {"name": "k8s", "namespace": "monitoring"}, "spec": {"retention": "15d", "replicas": 1}});
        mutate(&d, "monitoring.coreos.com", "prometheuses", &mut prom);
        assert!(prom["spec"].get("retention").is_none());
        let mut cm = json!({"metadata": {"name": "loki-config", "namespace": "monitoring"}, "data": {"retention_period": "720h"}});
        mutate(&d, "", "configmaps", &mut cm);
        assert_eq!(cm["data"]["retention_period"], "168h");
        let mut ks =
            json!({"metadata": {"name": "infrastructure", "namespace": "flux-system"}, "spec": {}});
        mutate(&d, "kustomize.toolkit.fluxcd.io", "kustomizations", &mut ks);
        assert_eq!(ks["spec"]["suspend"], true);
        let mut apps =
            json!({"metadata": {"name": "apps", "namespace": "flux-system"}, "spec": {}});
        mutate(
            &d,
            "kustomize.toolkit.fluxcd.io",
            "kustomizations",
            &mut apps,
        );
        assert!(apps["spec"].get("suspend").is_none());
    }
}
