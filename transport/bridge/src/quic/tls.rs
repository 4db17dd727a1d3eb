//! TLS for the QUIC adapter's server: its identity (a certificate generated at start, or
//! given as PEM files) and its SHA-256 fingerprint. How a client checks it (pinning that
//! fingerprint, or a CA it trusts) is `camring_client::quic::tls`.
//!
//! Everything uses rustls with the `ring` provider, named explicitly (never the process
//! default), and TLS 1.3 only, as QUIC requires.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

pub use camring_protocol::quic::{fingerprint, ALPN};

/// Errors setting TLS up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rcgen could not make a certificate.
    #[error("cannot generate a certificate")]
    Generate(#[from] rcgen::Error),
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {message}")]
    Pem {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// rustls refused the configuration (a key that does not match the certificate, ...).
    #[error("TLS")]
    Rustls(#[from] rustls::Error),
    /// quinn refused the rustls configuration.
    #[error("QUIC TLS: {0}")]
    Quic(String),
}

/// A certificate chain (end-entity first) and its private key.
#[derive(Debug)]
pub struct Identity {
    /// The chain, end-entity certificate first.
    pub certs: Vec<CertificateDer<'static>>,
    /// The end-entity certificate's private key.
    pub key: PrivateKeyDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Identity {
            certs: self.certs.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl Identity {
    /// A self-signed certificate for `names` (DNS names, or IP addresses, which become IP
    /// address SANs), with a fresh ECDSA P-256 key.
    pub fn generate(names: &[String]) -> Result<Identity, TlsError> {
        let made = rcgen::generate_simple_self_signed(names.to_vec())?;
        Ok(Identity {
            certs: vec![made.cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(made.signing_key.serialize_der())),
        })
    }

    /// The chain of the PEM file `cert` (one or more certificates, end-entity first) and the
    /// key of the PEM file `key` (PKCS#8, PKCS#1 or SEC1).
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Identity, TlsError> {
        let pem = |path: &Path, message: String| TlsError::Pem {
            path: path.display().to_string(),
            message,
        };
        let certs = CertificateDer::pem_file_iter(cert)
            .map_err(|e| pem(cert, e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem(cert, e.to_string()))?;
        if certs.is_empty() {
            return Err(pem(cert, "no certificate in the file".into()));
        }
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem(key, e.to_string()))?;
        Ok(Identity { certs, key })
    }

    /// The PEM text of the chain (what a client can be given as its `--ca`).
    pub fn cert_pem(&self) -> String {
        self.certs
            .iter()
            .map(|c| pem_block("CERTIFICATE", c))
            .collect()
    }

    /// The PEM text of the key.
    pub fn key_pem(&self) -> String {
        pem_block("PRIVATE KEY", self.key.secret_der())
    }

    /// SHA-256 of the end-entity certificate (DER), lower-case hex.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.certs[0])
    }
}

fn pem_block(label: &str, der: &[u8]) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::with_capacity(der.len().div_ceil(3) * 4);
    for chunk in der.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    let _ = writeln!(out, "-----END {label}-----");
    out
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server's QUIC crypto configuration: TLS 1.3, ALPN [`ALPN`], no client certificates.
pub fn server_crypto(
    identity: &Identity,
) -> Result<Arc<quinn::crypto::rustls::QuicServerConfig>, TlsError> {
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(identity.certs.clone(), identity.key.clone_key())?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    quinn::crypto::rustls::QuicServerConfig::try_from(tls)
        .map(Arc::new)
        .map_err(|e| TlsError::Quic(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip() {
        let id = Identity::generate(&["localhost".into()]).unwrap();
        let dir = std::env::temp_dir().join(format!("camring-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, id.cert_pem()).unwrap();
        std::fs::write(&key, id.key_pem()).unwrap();
        let back = Identity::from_pem_files(&cert, &key).unwrap();
        assert_eq!(back.certs, id.certs);
        assert_eq!(back.key.secret_der(), id.key.secret_der());
        assert!(Identity::from_pem_files(&key, &key).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(server_crypto(&back).is_ok());
        assert_eq!(id.fingerprint(), fingerprint(&id.certs[0]));
    }
}
