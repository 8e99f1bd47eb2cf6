//! rustls configuration from TLS profiles: the listener's certificate (HTTP/2 and HTTP/1.1 by
//! ALPN) and the trust used for https upstreams.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

static TLS13_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

fn versions(
    min: Option<&str>,
) -> Result<&'static [&'static rustls::SupportedProtocolVersion], String> {
    match min.unwrap_or("1.2") {
        "1.2" => Ok(rustls::ALL_VERSIONS),
        "1.3" => Ok(TLS13_ONLY),
        other => Err(format!(
            "unsupported TLS version `{other}` (use \"1.2\" or \"1.3\")"
        )),
    }
}

pub fn check_min_version(min: &str) -> Result<(), String> {
    versions(Some(min)).map(|_| ())
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read certificate file {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad PEM in {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate found in {}", path.display()));
    }
    Ok(certs)
}

/// The listener's TLS: certificate chain and key, ALPN `h2` then `http/1.1`.
pub fn server_config(
    cert_file: &Path,
    key_file: &Path,
    min_version: Option<&str>,
) -> Result<Arc<ServerConfig>, String> {
    let certs = read_certs(cert_file)?;
    let key = PrivateKeyDer::from_pem_file(key_file)
        .map_err(|e| format!("cannot read private key {}: {e}", key_file.display()))?;
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(versions(min_version)?)
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not fit together: {e}"))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Trust for upstream connections: the profile's CA bundle, else the public web PKI roots.
pub fn client_config(
    ca_file: Option<&Path>,
    min_version: Option<&str>,
) -> Result<ClientConfig, String> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            for cert in read_certs(path)? {
                roots
                    .add(cert)
                    .map_err(|e| format!("bad CA certificate in {}: {e}", path.display()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok(ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions(min_version)?)
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}
