//! TLS for every client in the binary: one rustls, one crypto provider (ring), one certificate verifier
//! (rustls-webpki 0.103 through rustls), one trust policy. Without `ca_file`, servers are checked against the
//! system's trust store (`/etc/ssl/certs`, via rustls-platform-verifier), the same policy reqwest uses; with
//! `ca_file`, against exactly the certificates in that file (a private CA, a test CA).

use rustls_platform_verifier::BuilderVerifierExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why a TLS client configuration cannot be built, naming the file or setting to check.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The protocol versions or the crypto provider.
    #[error("TLS: {0}")]
    Setup(rustls::Error),
    /// The system's trust store (no `ca_file`).
    #[error("TLS: system trust store: {0}")]
    TrustStore(rustls::Error),
    /// A PEM file that cannot be read or holds no usable certificate or key.
    #[error("{key} {}: {reason}", path.display())]
    File {
        /// `ca_file`, `cert_file` or `key_file`.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The client certificate and key do not go together.
    #[error("client certificate: {0}")]
    ClientCert(rustls::Error),
}

fn file_err<'a>(
    key: &'static str,
    path: &'a Path,
) -> impl Fn(&dyn std::fmt::Display) -> TlsError + 'a {
    move |e| TlsError::File {
        key,
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

/// Build the rustls client config (ring provider): the CA file's certificates, or the system's trust store
/// (platform verifier); an optional client certificate; ALPN.
pub fn client_config(
    ca_file: Option<&std::path::Path>,
    cert_file: Option<&std::path::Path>,
    key_file: Option<&std::path::Path>,
    alpn: &[String],
) -> Result<rustls::ClientConfig, TlsError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Setup)?;
    let builder = match ca_file {
        Some(ca) => {
            let bad = file_err("ca_file", ca);
            let mut roots = rustls::RootCertStore::empty();
            let certs = CertificateDer::pem_file_iter(ca).map_err(|e| bad(&e))?;
            for c in certs {
                let c = c.map_err(|e| bad(&e))?;
                roots.add(c).map_err(|e| bad(&e))?;
            }
            builder.with_root_certificates(roots)
        }
        None => builder
            .with_platform_verifier()
            .map_err(TlsError::TrustStore)?,
    };
    let mut cfg = match (cert_file, key_file) {
        (Some(c), Some(k)) => {
            let bad = file_err("cert_file", c);
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(c)
                .map_err(|e| bad(&e))?
                .collect::<Result<_, _>>()
                .map_err(|e| bad(&e))?;
            let key = PrivateKeyDer::from_pem_file(k).map_err(|e| file_err("key_file", k)(&e))?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(TlsError::ClientCert)?
        }
        _ => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = alpn.iter().map(|a| a.as_bytes().to_vec()).collect();
    Ok(cfg)
}

/// A client config that trusts nothing, for clients that never speak TLS (plain `http://`): building it loads no
/// certificates, which keeps a gateway without TLS from holding the system trust store in memory.
pub fn no_tls() -> Result<rustls::ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Setup)?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth())
}
