//! The real control plane's certificates and credentials, written into its scratch
//! folder: one CA, kube-apiserver's serving certificate, a `system:masters` client
//! certificate (the controller manager, the scheduler and the apiserver's kubelet
//! client use it), the service-account signing key and a static token file for the
//! harness and the twin's RBAC users (`--token-auth-file`).
//!
//! What kube-apiserver needs follows kubeadm's `pki` phase and envtest's
//! (controller-runtime pkg/internal/testing/controlplane); ECDSA P-256 keys
//! everywhere (rcgen's default; the service-account signer accepts ES256).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use super::RealControlPlaneError;
use crate::rbac::StaticToken;

/// The ClusterIP of the `kubernetes` Service: first address of the service range.
pub const KUBERNETES_SERVICE_IP: [u8; 4] = [10, 96, 0, 1];

/// Paths of everything [`generate`] wrote.
#[derive(Clone, Debug)]
pub struct Pki {
    pub ca_crt: PathBuf,
    pub ca_key: PathBuf,
    pub ca_pem: String,
    pub apiserver_crt: PathBuf,
    pub apiserver_key: PathBuf,
    pub admin_crt: PathBuf,
    pub admin_key: PathBuf,
    pub sa_key: PathBuf,
    /// Its public half: `--service-account-key-file` reads public keys only from PEM
    /// (a PKCS#8 private key there is "no valid RSA or ECDSA public keys").
    pub sa_pub: PathBuf,
    pub tokens: PathBuf,
}

fn write(path: &Path, text: &str) -> Result<(), RealControlPlaneError> {
    std::fs::write(path, text).map_err(|source| RealControlPlaneError::Scratch {
        path: path.to_path_buf(),
        source,
    })
}

/// Generates every credential into `dir/pki`; `admin_token` authenticates as
/// `system:masters`, each of `users` as its user and groups.
pub fn generate(
    dir: &Path,
    admin_token: &str,
    users: &[StaticToken],
) -> Result<Pki, RealControlPlaneError> {
    let pki = dir.join("pki");
    std::fs::create_dir_all(&pki).map_err(|source| RealControlPlaneError::Scratch {
        path: pki.clone(),
        source,
    })?;
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "stormdrill-real-ca");
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let ca_pem = ca_cert.pem();
    let ca_key_pem = ca_key.serialize_pem();
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate()?;
    let mut server = CertificateParams::new(vec![
        "localhost".to_string(),
        "kubernetes".to_string(),
        "kubernetes.default".to_string(),
        "kubernetes.default.svc".to_string(),
        "kubernetes.default.svc.cluster.local".to_string(),
    ])?;
    server
        .subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    server
        .subject_alt_names
        .push(SanType::IpAddress(std::net::IpAddr::from(
            KUBERNETES_SERVICE_IP,
        )));
    server
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = server.signed_by(&server_key, &issuer)?;

    let admin_key = KeyPair::generate()?;
    let mut admin = CertificateParams::new(Vec::<String>::new())?;
    admin
        .distinguished_name
        .push(DnType::CommonName, "stormdrill-admin");
    admin
        .distinguished_name
        .push(DnType::OrganizationName, "system:masters");
    admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let admin_cert = admin.signed_by(&admin_key, &issuer)?;

    let sa_key = KeyPair::generate()?;

    let out = Pki {
        ca_crt: pki.join("ca.crt"),
        ca_key: pki.join("ca.key"),
        ca_pem: ca_pem.clone(),
        apiserver_crt: pki.join("apiserver.crt"),
        apiserver_key: pki.join("apiserver.key"),
        admin_crt: pki.join("admin.crt"),
        admin_key: pki.join("admin.key"),
        sa_key: pki.join("sa.key"),
        sa_pub: pki.join("sa.pub"),
        tokens: pki.join("tokens.csv"),
    };
    write(&out.ca_crt, &ca_pem)?;
    write(&out.ca_key, &ca_key_pem)?;
    write(&out.apiserver_crt, &server_cert.pem())?;
    write(&out.apiserver_key, &server_key.serialize_pem())?;
    write(&out.admin_crt, &admin_cert.pem())?;
    write(&out.admin_key, &admin_key.serialize_pem())?;
    write(&out.sa_key, &sa_key.serialize_pem())?;
    write(&out.sa_pub, &sa_key.public_key_pem())?;
    write(&out.tokens, &token_file(admin_token, users))?;
    Ok(out)
}

/// kube-apiserver's `--token-auth-file`: `token,user,uid,"group1,group2"` per line.
pub fn token_file(admin_token: &str, users: &[StaticToken]) -> String {
    let mut out = format!("{admin_token},stormdrill-admin,stormdrill-admin,\"system:masters\"\n");
    for (i, u) in users.iter().enumerate() {
        out.push_str(&format!(
            "{},{},stormdrill-user-{i},\"{}\"\n",
            u.token,
            u.user,
            u.groups.join(",")
        ));
    }
    out
}

/// A kubeconfig that authenticates with the admin client certificate (for the
/// controller manager and the scheduler).
pub fn kubeconfig(pki: &Pki, server: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: real\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\nusers:\n- name: admin\n  user:\n    client-certificate: {crt}\n    client-key: {key}\ncontexts:\n- name: real\n  context:\n    cluster: real\n    user: admin\ncurrent-context: real\n",
        ca = pki.ca_crt.display(),
        crt = pki.admin_crt.display(),
        key = pki.admin_key.display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_quotes_groups_as_kube_apiserver_reads_them() {
        let users = vec![StaticToken {
            token: "t1".into(),
            user: "system:serviceaccount:stormdrill:stormdrill".into(),
            groups: vec![
                "system:serviceaccounts".into(),
                "system:serviceaccounts:stormdrill".into(),
            ],
        }];
        let f = token_file("admin", &users);
        let lines: Vec<&str> = f.lines().collect();
        assert_eq!(
            lines[0],
            "admin,stormdrill-admin,stormdrill-admin,\"system:masters\""
        );
        assert_eq!(
            lines[1],
            "t1,system:serviceaccount:stormdrill:stormdrill,stormdrill-user-0,\"system:serviceaccounts,system:serviceaccounts:stormdrill\""
        );
    }

    #[test]
    fn generates_pem_files() {
        let dir = std::env::temp_dir().join(format!("stormdrill-pki-{}", std::process::id()));
        let pki = generate(&dir, "tok", &[]).expect("pki");
        let crt = std::fs::read_to_string(&pki.apiserver_crt).expect("crt");
        assert!(crt.starts_with("-----BEGIN CERTIFICATE-----"));
        let key = std::fs::read_to_string(&pki.sa_key).expect("key");
        assert!(key.contains("PRIVATE KEY"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
