//! Optional HTTPS: a rustls server configuration from PEM certificate and key files.

use std::sync::Arc;

use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use crate::config::Settings;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("setting `tls_cert_file`: cannot read certificates from {path}: {why}")]
    Certificates { path: String, why: String },
    #[error("setting `tls_key_file`: cannot read a private key from {path}: {why}")]
    Key { path: String, why: String },
    #[error("TLS configuration refused: {0}")]
    Config(#[from] rustls::Error),
}

/// `None` when TLS is not configured.
pub fn server_config(settings: &Settings) -> Result<Option<ServerConfig>, TlsError> {
    let (Some(cert_path), Some(key_path)) = (&settings.tls_cert_file, &settings.tls_key_file)
    else {
        return Ok(None);
    };
    let certificates = CertificateDer::pem_file_iter(cert_path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Certificates {
            path: cert_path.display().to_string(),
            why: e.to_string(),
        })?;
    if certificates.is_empty() {
        return Err(TlsError::Certificates {
            path: cert_path.display().to_string(),
            why: "no certificate found".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| TlsError::Key {
        path: key_path.display().to_string(),
        why: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certificates, key)?;
    Ok(Some(config))
}
