//! TLS for every client in the binary: one rustls, one crypto provider (ring), one certificate verifier
//! (rustls-webpki 0.103 through rustls), one trust policy. Without `ca_file`, servers are checked against the
//! system's trust store (`/etc/ssl/certs`, via rustls-platform-verifier), the same policy reqwest uses; with
//! `ca_file`, against exactly the certificates in that file (a private CA, a test CA).

use rustls_platform_verifier::BuilderVerifierExt;
use std::sync::Arc;

/// Build the rustls client config (ring provider): the CA file's certificates, or the system's trust store
/// (platform verifier); an optional client certificate; ALPN.
pub fn client_config(
    ca_file: Option<&std::path::Path>,
    cert_file: Option<&std::path::Path>,
    key_file: Option<&std::path::Path>,
    alpn: &[String],
) -> Result<rustls::ClientConfig, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match ca_file {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(ca)
                .map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
            for c in certs {
                let c = c.map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
                roots
                    .add(c)
                    .map_err(|e| format!("ca_file {}: {e}", ca.display()))?;
            }
            builder.with_root_certificates(roots)
        }
        None => builder
            .with_platform_verifier()
            .map_err(|e| format!("TLS: system trust store: {e}"))?,
    };
    let mut cfg = match (cert_file, key_file) {
        (Some(c), Some(k)) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(c)
                .map_err(|e| format!("cert_file {}: {e}", c.display()))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("cert_file {}: {e}", c.display()))?;
            let key = PrivateKeyDer::from_pem_file(k)
                .map_err(|e| format!("key_file {}: {e}", k.display()))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| format!("client certificate: {e}"))?
        }
        _ => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    Ok(cfg)
}

/// A client config that trusts nothing, for clients that never speak TLS (plain `http://`): building it loads no
/// certificates, which keeps a gateway without TLS from holding the system trust store in memory.
pub fn no_tls() -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth())
}
