//! How a client checks the QUIC bridge's certificate: by pinning its SHA-256 fingerprint
//! (what `camring bridge quic` prints), or against a CA it trusts.
//!
//! rustls with the `ring` provider, named explicitly (never the process default), and
//! TLS 1.3 only, as QUIC requires.

use std::path::Path;
use std::sync::Arc;

use camring_protocol::quic::{fingerprint, fingerprint_bytes, ALPN};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

pub use camring_protocol::quic::{parse_fingerprint, BadFingerprint};

/// Errors setting a client's TLS up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The CA file could not be read or holds no certificate.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// rustls refused the configuration.
    #[error("TLS")]
    Rustls(#[from] rustls::Error),
    /// quinn refused the rustls configuration.
    #[error("QUIC TLS: {0}")]
    Quic(String),
}

/// How a client decides to trust the server's certificate.
#[derive(Debug, Clone)]
pub enum Trust {
    /// Exactly the end-entity certificate whose SHA-256 is this (names and dates are not
    /// looked at: the pin is the whole identity).
    Pinned([u8; 32]),
    /// Any certificate chaining to one of these roots, for the name connected to, within
    /// its validity dates (standard WebPKI checks).
    Roots(Vec<CertificateDer<'static>>),
}

impl Trust {
    /// The roots of a PEM file of one or more CA certificates.
    pub fn ca_file(path: &Path) -> Result<Trust, TlsError> {
        let pem = |message: String| TlsError::Pem {
            path: path.display().to_string(),
            message,
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| pem(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem(e.to_string()))?;
        if certs.is_empty() {
            return Err(pem("no certificate in the file".into()));
        }
        Ok(Trust::Roots(certs))
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client's QUIC crypto configuration: TLS 1.3, ALPN [`ALPN`], the server checked as
/// `trust` says.
pub fn client_crypto(
    trust: &Trust,
) -> Result<Arc<quinn::crypto::rustls::QuicClientConfig>, TlsError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let mut tls = match trust {
        Trust::Pinned(pin) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned {
                pin: *pin,
                provider: provider(),
            }))
            .with_no_client_auth(),
        Trust::Roots(certs) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certs {
                roots.add(c.clone())?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
    };
    tls.alpn_protocols = vec![ALPN.to_vec()];
    quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map(Arc::new)
        .map_err(|e| TlsError::Quic(e.to_string()))
}

/// Accepts exactly the pinned end-entity certificate. The handshake's signatures are still
/// verified against that certificate's key, so the server must hold the key.
#[derive(Debug)]
struct Pinned {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if fingerprint_bytes(end_entity.as_ref()) == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "the server's certificate has SHA-256 {}, not the pinned one",
                fingerprint(end_entity)
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_files_and_pins() {
        assert!(client_crypto(&Trust::Pinned([0; 32])).is_ok());
        let dir = std::env::temp_dir().join(format!("camring-client-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let e = Trust::ca_file(&empty).unwrap_err().to_string();
        assert!(e.contains("no certificate"), "{e}");
        assert!(Trust::ca_file(&dir.join("absent.pem")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
