//! The cluster's certificates: a CA made on first start, a serving certificate renewed on
//! every start (so new SANs take effect), the admin client certificate that the
//! generated kubeconfig carries, the client certificate the API server presents to node
//! agents (kube-apiserver's `apiserver-kubelet-client`), and serving certificates issued
//! to node agents for their HTTPS servers.

use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// PEM files of the cluster PKI under `DATA/tls`.
#[derive(Clone)]
pub struct Pki {
    pub dir: PathBuf,
    pub ca_cert_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
    /// The API server's identity towards node agents (CN=kube-apiserver-kubelet-client,
    /// O=system:masters, as kube-apiserver's).
    pub kubelet_client_cert_pem: String,
    pub kubelet_client_key_pem: String,
}

/// A certificate and its private key, PEM.
#[derive(Clone, Debug)]
pub struct IssuedCert {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The names the serving certificate is valid for.
#[derive(Clone, Debug, Default)]
pub struct ServingNames {
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
}

impl ServingNames {
    /// localhost, 127.0.0.1, ::1, the hostname, the node IP, and any extra names.
    pub fn standard(node_ip: Option<IpAddr>, extra: &[String]) -> Self {
        let mut names = ServingNames {
            dns: vec![
                "localhost".into(),
                "kubernetes".into(),
                "kubernetes.default".into(),
                "kubernetes.default.svc".into(),
                "kubernetes.default.svc.cluster.local".into(),
            ],
            ips: vec![IpAddr::from([127, 0, 0, 1]), "::1".parse().expect("valid literal")],
        };
        if let Ok(host) = gethostname::gethostname().into_string() {
            names.dns.push(host);
        }
        names.ips.extend(node_ip);
        for san in extra {
            match san.parse::<IpAddr>() {
                Ok(ip) => names.ips.push(ip),
                Err(_) => names.dns.push(san.clone()),
            }
        }
        names.dns.dedup();
        names.ips.dedup();
        names
    }
}

pub(crate) fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

fn ca_params() -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, "skiff-ca");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    Ok(params)
}

fn leaf_params(
    common_name: &str,
    organization: Option<&str>,
    usage: ExtendedKeyUsagePurpose,
) -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, common_name);
    if let Some(org) = organization {
        params.distinguished_name.push(DnType::OrganizationName, org);
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![usage];
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2126, 1, 1);
    Ok(params)
}

fn subject_alt_names(names: &ServingNames) -> Vec<SanType> {
    names
        .dns
        .iter()
        .filter_map(|d| d.clone().try_into().ok().map(SanType::DnsName))
        .chain(names.ips.iter().map(|ip| SanType::IpAddress(*ip)))
        .collect()
}

impl Pki {
    /// Loads the PKI under `dir`, creating what is missing, and issues a fresh serving
    /// certificate for `names`.
    pub fn load_or_create(dir: &Path, names: &ServingNames) -> Result<Self> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let (ca_cert_path, ca_key_path) = (dir.join("ca.crt"), dir.join("ca.key"));
        if !ca_cert_path.exists() || !ca_key_path.exists() {
            let key = KeyPair::generate()?;
            let cert = ca_params()?.self_signed(&key)?;
            write_private(&ca_key_path, &key.serialize_pem())?;
            write_private(&ca_cert_path, &cert.pem())?;
        }
        let ca_cert_pem = fs::read_to_string(&ca_cert_path)?;
        let ca_key = KeyPair::from_pem(&fs::read_to_string(&ca_key_path)?)?;
        let issuer = Issuer::from_ca_cert_pem(&ca_cert_pem, ca_key)?;

        let mut server = leaf_params("skiff-apiserver", None, ExtendedKeyUsagePurpose::ServerAuth)?;
        server.subject_alt_names = subject_alt_names(names);
        let server_key = KeyPair::generate()?;
        let server_cert = server.signed_by(&server_key, &issuer)?;
        write_private(&dir.join("server.crt"), &server_cert.pem())?;
        write_private(&dir.join("server.key"), &server_key.serialize_pem())?;

        let client_cert = |name: &str, cn: &str| -> Result<(String, String)> {
            let (cert_path, key_path) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
            if !cert_path.exists() || !key_path.exists() {
                let params = leaf_params(cn, Some("system:masters"), ExtendedKeyUsagePurpose::ClientAuth)?;
                let key = KeyPair::generate()?;
                let cert = params.signed_by(&key, &issuer)?;
                write_private(&key_path, &key.serialize_pem())?;
                write_private(&cert_path, &cert.pem())?;
            }
            Ok((fs::read_to_string(&cert_path)?, fs::read_to_string(&key_path)?))
        };
        let (admin_cert_pem, admin_key_pem) = client_cert("admin", "system:admin")?;
        let (kubelet_client_cert_pem, kubelet_client_key_pem) =
            client_cert("apiserver-kubelet-client", "kube-apiserver-kubelet-client")?;

        Ok(Pki {
            dir: dir.to_path_buf(),
            ca_cert_pem,
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
            admin_cert_pem,
            admin_key_pem,
            kubelet_client_cert_pem,
            kubelet_client_key_pem,
        })
    }

    /// A fresh serving certificate for a node agent (CN=system:node:NAME, as the
    /// kubelet's), valid for the node's names and addresses, signed by the cluster CA.
    pub fn issue_node_serving_cert(&self, node: &str, names: &ServingNames) -> Result<IssuedCert> {
        let ca_key = KeyPair::from_pem(&fs::read_to_string(self.dir.join("ca.key"))?)?;
        let issuer = Issuer::from_ca_cert_pem(&self.ca_cert_pem, ca_key)?;
        let mut params =
            leaf_params(&format!("system:node:{node}"), Some("system:nodes"), ExtendedKeyUsagePurpose::ServerAuth)?;
        params.subject_alt_names = subject_alt_names(names);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        Ok(IssuedCert { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }

    /// Writes a kubeconfig for the admin user pointing at `server_url`.
    pub fn write_admin_kubeconfig(&self, path: &Path, server_url: &str) -> Result<()> {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let kubeconfig = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: skiff\n  cluster:\n    server: {server_url}\n    certificate-authority-data: {}\nusers:\n- name: skiff-admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: skiff\n  context:\n    cluster: skiff\n    user: skiff-admin\n    namespace: default\ncurrent-context: skiff\n",
            b64(&self.ca_cert_pem), b64(&self.admin_cert_pem), b64(&self.admin_key_pem),
        );
        write_private(path, &kubeconfig)
    }
}

/// The user and groups named by a client certificate (CN and O, as Kubernetes reads them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    pub fn from_certificate(der: &[u8]) -> Option<Self> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        let subject = cert.subject();
        let name = subject.iter_common_name().next()?.as_str().ok()?.to_string();
        let mut groups: Vec<String> =
            subject.iter_organization().filter_map(|o| o.as_str().ok().map(str::to_string)).collect();
        groups.push("system:authenticated".into());
        Some(UserInfo { name, groups })
    }
}
