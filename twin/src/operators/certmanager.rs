//! cert-manager, simulated: issuers become Ready (an ACME issuer "registers its
//! account"; self-signed and CA issuers are ready at once), and a Certificate whose
//! issuer is Ready gets a real key pair and X.509 certificate for its dnsNames,
//! stored in its `secretName` Secret (`tls.crt`, `tls.key`, `ca.crt`) with the status
//! cert-manager writes (Ready, notBefore, notAfter, renewalTime, revision). Each
//! issuer signs with its own twin-generated CA (an ACME issuer cannot reach Let's
//! Encrypt from here); the CA is in `ca.crt` so clients can verify the chain.

use std::collections::HashMap;

use base64::Engine;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use serde_json::{json, Value};
use tokio::sync::watch;

use super::{operator_running, ready_condition, set_status};
use crate::ctx::{obj, reconcile_loop, Ctx};

struct IssuerCa {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn new_ca(name: &str) -> Option<IssuerCa> {
    let key = KeyPair::generate().ok()?;
    let mut params = CertificateParams::new(Vec::<String>::new()).ok()?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{name} (stormdrill twin)"));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).ok()?;
    Some(IssuerCa {
        pem: cert.pem(),
        issuer: Issuer::new(params, key),
    })
}

pub async fn run(ctx: Ctx, stop: watch::Receiver<bool>) {
    let mut cas: HashMap<String, IssuerCa> = HashMap::new();
    reconcile_loop(
        ctx,
        &[
            ("cert-manager.io", "certificates"),
            ("cert-manager.io", "clusterissuers"),
            ("cert-manager.io", "issuers"),
            ("apps", "deployments"),
            ("", "secrets"),
        ],
        stop,
        move |ctx| reconcile(ctx, &mut cas),
    )
    .await
}

fn reconcile(ctx: &Ctx, cas: &mut HashMap<String, IssuerCa>) {
    if !operator_running(ctx, "cert-manager", "cert-manager") {
        return;
    }
    for iss in ctx
        .client
        .list("cert-manager.io", "clusterissuers", None, None)
    {
        let (reason, message) = if iss.pointer("/spec/acme").is_some() {
            (
                "ACMEAccountRegistered",
                "The ACME account was registered with the ACME server",
            )
        } else {
            ("IsReady", "")
        };
        let acme = iss.pointer("/spec/acme").map(|a| json!({"uri": format!("{}/acct/1", a["server"].as_str().unwrap_or("")), "lastRegisteredEmail": a["email"]}));
        let mut status =
            json!({"conditions": ready_condition(&iss, "Ready", true, reason, message)});
        if let Some(a) = acme {
            status["acme"] = a;
        }
        set_status(ctx, "cert-manager.io", "clusterissuers", &iss, status);
    }
    for cert in ctx
        .client
        .list("cert-manager.io", "certificates", None, None)
    {
        let ns = obj::namespace(&cert).to_string();
        let issuer_kind = cert
            .pointer("/spec/issuerRef/kind")
            .and_then(Value::as_str)
            .unwrap_or("Issuer");
        let issuer_name = cert
            .pointer("/spec/issuerRef/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let issuer = if issuer_kind == "ClusterIssuer" {
            ctx.client
                .get("cert-manager.io", "clusterissuers", None, &issuer_name)
        } else {
            ctx.client
                .get("cert-manager.io", "issuers", Some(&ns), &issuer_name)
        };
        let Some(issuer) = issuer.filter(|i| obj::condition(i, "Ready") == Some("True")) else {
            let msg = format!("Issuing certificate as Secret does not exist; waiting on {issuer_kind} {issuer_name:?} to be Ready");
            set_status(
                ctx,
                "cert-manager.io",
                "certificates",
                &cert,
                json!({"conditions": ready_condition(&cert, "Ready", false, "DoesNotExist", &msg)}),
            );
            continue;
        };
        if let Some(failed) = crate::defects::certificate_failure(ctx, &cert, &issuer) {
            set_status(ctx, "cert-manager.io", "certificates", &cert, failed);
            continue;
        }
        let secret_name = cert
            .pointer("/spec/secretName")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let have = ctx
            .client
            .get("", "secrets", Some(&ns), &secret_name)
            .is_some_and(|s| s.pointer("/data/tls.crt").is_some());
        if !have {
            let key = format!("{issuer_kind}/{}", obj::uid(&issuer));
            if !cas.contains_key(&key) {
                match new_ca(&issuer_name) {
                    Some(ca) => {
                        cas.insert(key.clone(), ca);
                    }
                    None => continue,
                }
            }
            let ca = &cas[&key];
            let names: Vec<String> = cert
                .pointer("/spec/dnsNames")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            let Ok(leaf_key) = KeyPair::generate() else {
                continue;
            };
            let Ok(mut params) = CertificateParams::new(names.clone()) else {
                continue;
            };
            if let Some(cn) = names.first() {
                params
                    .distinguished_name
                    .push(DnType::CommonName, cn.clone());
            }
            let Ok(leaf) = params.signed_by(&leaf_key, &ca.issuer) else {
                continue;
            };
            let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
            let secret = json!({
                "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
                "metadata": {"name": secret_name, "namespace": ns,
                             "annotations": {"cert-manager.io/certificate-name": obj::name(&cert), "cert-manager.io/issuer-name": issuer_name, "cert-manager.io/issuer-kind": issuer_kind, "cert-manager.io/alt-names": names.join(",")}},
                "data": {"tls.crt": b64(&leaf.pem()), "tls.key": b64(&leaf_key.serialize_pem()), "ca.crt": b64(&ca.pem)},
            });
            if ctx.client.create(secret).is_err() {
                continue;
            }
        }
        let now = chrono::Utc::now();
        let fmt =
            |d: chrono::DateTime<chrono::Utc>| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let not_before = cert
            .pointer("/status/notBefore")
            .and_then(Value::as_str)
            .map(String::from)
            .unwrap_or_else(|| fmt(now));
        let status = json!({
            "conditions": ready_condition(&cert, "Ready", true, "Ready", "Certificate is up to date and has not expired"),
            "notBefore": not_before,
            "notAfter": cert.pointer("/status/notAfter").cloned().unwrap_or_else(|| json!(fmt(now + chrono::Duration::days(90)))),
            "renewalTime": cert.pointer("/status/renewalTime").cloned().unwrap_or_else(|| json!(fmt(now + chrono::Duration::days(60)))),
            "revision": 1,
        });
        set_status(ctx, "cert-manager.io", "certificates", &cert, status);
    }
}
