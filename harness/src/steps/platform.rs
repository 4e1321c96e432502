//! Platform checks (phases 1, 3, 4 and 5): cluster DNS from a pod, Ready conditions
//! (cert-manager, any kind), Flux, Velero's storage location, database claims on
//! Rook, image scans in Harbor, Gatekeeper's answer to a dry-run pod, and the
//! PodDisruptionBudget's answer to a dry-run eviction.

use std::time::Duration;

use cucumber::{given, then};
use k8s_openapi::api::core::v1::Service;
use kube::Api;

use super::checks::{self, judge_all, judge_yes, limit, CheckError, Unit};
use crate::{
    probe::{
        dns, harbor,
        platform::{self, Admission, Eviction},
    },
    stack,
    world::World,
};

/// How many culprits a message names.
const LIST_LIMIT: usize = 5;

/// The phase checks' precondition: the stack is applied (once per run) and its
/// workloads awaited, then operators get `stack.settle_s` to report health. What is still not ready then is
/// not a failure here: the checks that follow judge it, criterion by criterion,
/// where "the documented stack is deployed" would fail every scenario alike.
#[given(regex = r"^the documented stack is applied$")]
async fn stack_applied(world: &mut World) -> Result<(), CheckError> {
    let deadline = limit(world, "the profile's stack.deploy_timeout_s", Unit::Seconds)?;
    let settle = limit(world, "the profile's stack.settle_s", Unit::Seconds)?;
    let secs = |v: f64| Duration::from_secs_f64(v.max(1.0));
    let dir = world.context().stack_dir.clone();
    // The run's folder names the run: the stack is applied once per run.
    let run = world.context().run_dir.clone();
    let report = stack::apply_shared(
        world.client(),
        &dir,
        run.as_deref(),
        secs(deadline.value),
        secs(settle.value),
        |line| tracing::debug!("stack: {line}"),
    )
    .await
    .map_err(|e| CheckError::Stack(crate::diag::one_line(&e)))?;
    world.measure(
        "stack_deploy_s",
        checks::round3((report.apply_time + report.ready_time).as_secs_f64()),
    );
    world.measure("stack_not_ready", report.not_ready.len() as f64);
    if !report.not_ready.is_empty() {
        tracing::info!(
            "stack applied; not ready after {}s: {}",
            settle.value,
            checks::list(
                report
                    .not_ready
                    .iter()
                    .map(|n| format!("{} ({})", n.object, n.reason)),
                10
            )
        );
    }
    Ok(())
}

/// `<svc>.<ns>.svc.<domain>`: the Service a cluster name points at, if it is one.
fn service_of(name: &str) -> Option<(&str, &str)> {
    let mut parts = name.trim_end_matches('.').split('.');
    let (svc, ns, kind) = (parts.next()?, parts.next()?, parts.next()?);
    (kind == "svc" && parts.next().is_some()).then_some((svc, ns))
}

#[then(regex = r#"^a pod in namespace "([^"]+)" resolves "([^"]+)"$"#)]
async fn pod_resolves(
    world: &mut World,
    namespace: String,
    name: String,
) -> Result<(), CheckError> {
    let client = world.client().clone();
    let lookup = dns::lookup(&client, &namespace, &name).await?;
    // A Service name must resolve to that Service's ClusterIP, not just to something.
    let cluster_ip = match service_of(&name) {
        Some((svc, ns)) => Api::<Service>::namespaced(client.clone(), ns)
            .get_opt(svc)
            .await
            .ok()
            .flatten()
            .and_then(|s| s.spec.and_then(|s| s.cluster_ip))
            .filter(|ip| ip != "None" && !ip.is_empty()),
        None => None,
    };
    let right = !lookup.addresses.is_empty()
        && cluster_ip
            .as_ref()
            .is_none_or(|ip| lookup.addresses.contains(ip));
    if judge_yes(world, format!("dns_resolves[{name}]"), right) {
        return Ok(());
    }
    Err(CheckError::Unmet {
        expected: format!("{name} to resolve from {}", lookup.pod),
        seen: match (&lookup.failure, cluster_ip) {
            (Some(f), _) => format!("{}: {f}", lookup.tool),
            (None, Some(ip)) => format!(
                "it resolves to {}, not the Service's ClusterIP {ip}",
                lookup.addresses.join(", ")
            ),
            (None, None) => "no address".into(),
        },
    })
}

#[then(regex = r#"^the (\S+) "([^"]+)"(?: in namespace "([^"]+)")? is Ready$"#)]
async fn object_ready(
    world: &mut World,
    word: String,
    name: String,
    namespace: String,
) -> Result<(), CheckError> {
    let client = world.client().clone();
    let ns = (!namespace.is_empty()).then_some(namespace.as_str());
    let kind = world.context().catalog.resolve(&client, &word).await?;
    kind.require_scope(&word, ns.is_some())
        .map_err(crate::probe::k8s::ProbeError::from)?;
    let obj = crate::probe::k8s::get_object(&client, &kind, ns, &name).await?;
    let id = ns.map_or_else(|| name.clone(), |ns| format!("{ns}/{name}"));
    let criterion = format!("{}_ready[{id}]", kind.resource.kind.to_lowercase());
    let why = match obj.as_ref().and_then(|o| serde_json::to_value(o).ok()) {
        None => Err(format!("there is no {} {id}", kind.resource.kind)),
        Some(v) => platform::ready(&v),
    };
    if judge_yes(world, criterion, why.is_ok()) {
        return Ok(());
    }
    Err(CheckError::Unmet {
        expected: format!("{} {id} Ready", kind.resource.kind),
        seen: why.err().unwrap_or_default(),
    })
}

#[then(regex = r"^every Flux Kustomization is Ready and not suspended$")]
async fn flux_ready(world: &mut World) -> Result<(), CheckError> {
    let client = world.client().clone();
    let kind = world
        .context()
        .catalog
        .resolve(&client, "kustomization.kustomize.toolkit.fluxcd.io")
        .await?;
    let s = platform::flux_state(&platform::list(&client, &kind, None).await?);
    let ready = judge_all(
        world,
        "flux_kustomizations_ready",
        s.ready,
        s.total,
        "Kustomizations",
    );
    let not_suspended = world.judge(crate::verdict::Criterion::new(
        "flux_kustomizations_suspended",
        s.suspended.len() as f64,
        crate::verdict::Comparison::AtMost,
        0.0,
        "Kustomizations",
    ));
    if ready && not_suspended {
        return Ok(());
    }
    let mut seen = Vec::new();
    if s.total == 0 {
        seen.push("there are no Kustomizations".to_owned());
    }
    if !s.not_ready.is_empty() {
        seen.push(format!(
            "not Ready: {}",
            checks::list(
                s.not_ready.iter().map(|(n, w)| format!("{n} ({w})")),
                LIST_LIMIT
            )
        ));
    }
    if !s.suspended.is_empty() {
        seen.push(format!("suspended: {}", s.suspended.join(", ")));
    }
    Err(CheckError::Unmet {
        expected: "every Flux Kustomization Ready and reconciling".into(),
        seen: seen.join("; "),
    })
}

#[then(regex = r#"^the backup storage location "([^"]+)" in namespace "([^"]+)" is Available$"#)]
async fn bsl_available(
    world: &mut World,
    name: String,
    namespace: String,
) -> Result<(), CheckError> {
    let client = world.client().clone();
    let kind = world
        .context()
        .catalog
        .resolve(&client, "backupstoragelocation.velero.io")
        .await?;
    let obj = crate::probe::k8s::get_object(&client, &kind, Some(&namespace), &name).await?;
    let v = obj.and_then(|o| serde_json::to_value(o).ok());
    let (phase, message) = v.as_ref().map_or((None, None), platform::bsl_phase);
    if judge_yes(
        world,
        format!("bsl_available[{namespace}/{name}]"),
        phase == Some("Available"),
    ) {
        return Ok(());
    }
    Err(CheckError::Unmet {
        expected: format!("BackupStorageLocation {namespace}/{name} Available"),
        seen: match (&v, phase) {
            (None, _) => "it does not exist".into(),
            (Some(_), p) => format!(
                "its phase is {}{}",
                p.unwrap_or("not reported"),
                message.map_or(String::new(), |m| format!(": {m}"))
            ),
        },
    })
}

#[then(regex = r#"^every PVC in namespace "([^"]+)" is Bound on a Rook storage class$"#)]
async fn pvcs_on_rook(world: &mut World, namespace: String) -> Result<(), CheckError> {
    let client = world.client().clone();
    let pvc = world
        .context()
        .catalog
        .resolve(&client, "persistentvolumeclaim")
        .await?;
    let sc = world
        .context()
        .catalog
        .resolve(&client, "storageclass.storage.k8s.io")
        .await?;
    let claims = platform::list(&client, &pvc, Some(&namespace)).await?;
    let classes = platform::list(&client, &sc, None).await?;
    let s = platform::claims_on_rook(&claims, &classes);
    if judge_all(
        world,
        format!("pvcs_on_rook[{namespace}]"),
        s.on_rook,
        s.total,
        "PVCs",
    ) {
        return Ok(());
    }
    Err(CheckError::Unmet {
        expected: format!("every PVC in namespace {namespace} Bound on a Rook StorageClass"),
        seen: if s.total == 0 {
            "there are none".into()
        } else {
            checks::list(
                s.others.iter().map(|(n, w)| format!("{n}: {w}")),
                LIST_LIMIT,
            )
        },
    })
}

#[then(regex = r#"^every image of namespace "([^"]+)" has a vulnerability scan in Harbor$"#)]
async fn images_scanned(world: &mut World, namespace: String) -> Result<(), CheckError> {
    let scans = harbor::namespace_scans(world.client(), &harbor::harbor(), &namespace).await?;
    let unscanned: Vec<String> = scans
        .iter()
        .filter_map(|(image, scan)| match scan {
            harbor::Scan::Done { .. } => None,
            harbor::Scan::Missing { why } => Some(format!("{image} ({why})")),
            harbor::Scan::NotInRegistry => Some(format!("{image} (not in Harbor)")),
        })
        .collect();
    let total = scans.len();
    if judge_all(
        world,
        format!("images_scanned[{namespace}]"),
        total - unscanned.len(),
        total,
        "images",
    ) {
        return Ok(());
    }
    Err(CheckError::Unmet {
        expected: format!("a completed scan of every image namespace {namespace} runs"),
        seen: if total == 0 {
            "the namespace runs no image".into()
        } else {
            format!("none for {}", checks::list(unscanned, LIST_LIMIT))
        },
    })
}

#[then(regex = r#"^a pod with image "([^"]+)" is (denied|admitted) in namespace "([^"]+)"$"#)]
async fn pod_admission(
    world: &mut World,
    image: String,
    expect: String,
    namespace: String,
) -> Result<(), CheckError> {
    let answer = platform::dry_run_pod(world.client(), &namespace, &image).await?;
    let want_denied = expect == "denied";
    let ok = match &answer {
        Admission::Denied(_) => want_denied,
        Admission::Admitted => !want_denied,
        // Refused for another reason: the policy was not what decided.
        Admission::Refused { .. } => false,
    };
    if judge_yes(
        world,
        format!("admission_{expect}[{namespace} {image}]"),
        ok,
    ) {
        return Ok(());
    }
    Err(CheckError::Unmet {
        expected: format!("a pod with image {image:?} to be {expect} in namespace {namespace}"),
        seen: match answer {
            Admission::Admitted => "the server-side dry run admitted it".into(),
            Admission::Denied(m) => format!("it was denied: {m}"),
            Admission::Refused { code, message } => {
                format!("it was refused ({code}) for another reason: {message}")
            }
        },
    })
}

/// What a drain would meet: a server-side dry-run eviction (nothing is evicted).
#[then(regex = r#"^pod "([^"]+)" in namespace "([^"]+)" cannot be evicted$"#)]
async fn pod_not_evictable(
    world: &mut World,
    pod: String,
    namespace: String,
) -> Result<(), CheckError> {
    let answer = platform::dry_run_eviction(world.client(), &namespace, &pod).await?;
    let refused = matches!(answer, Eviction::Blocked(_));
    if judge_yes(
        world,
        format!("eviction_refused[{namespace}/{pod}]"),
        refused,
    ) {
        return Ok(());
    }
    Err(CheckError::Unmet {
        expected: format!("a PodDisruptionBudget to refuse the eviction of pod {namespace}/{pod}"),
        seen: match answer {
            Eviction::Allowed => {
                "the dry-run eviction was allowed: a drain would evict it (no budget holds it)"
                    .into()
            }
            Eviction::Blocked(m) => m,
            Eviction::Refused { code, message } => {
                format!("the eviction was refused ({code}) for another reason: {message}")
            }
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names() {
        assert_eq!(
            service_of("fastapi.openalex.svc.cluster.local"),
            Some(("fastapi", "openalex"))
        );
        assert_eq!(
            service_of("fastapi.openalex.svc.cluster.local."),
            Some(("fastapi", "openalex"))
        );
        assert_eq!(service_of("fastapi"), None);
        assert_eq!(service_of("db-0.pg.openalex.svc.cluster.local"), None);
        assert_eq!(service_of("example.org"), None);
    }
}
