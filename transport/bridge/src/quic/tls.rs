//! TLS for the QUIC adapter: the server's identity (a certificate generated at start, or
//! given as PEM files), its SHA-256 fingerprint, and the two ways a client checks it:
//! pinning that fingerprint, or a CA it trusts.
//!
//! Everything uses rustls with the `ring` provider, named explicitly (never the process
//! default), and TLS 1.3 only, as QUIC requires.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};

/// The ALPN protocol of camring's QUIC adapter (docs/protocol.md, 10.8).
pub const ALPN: &[u8] = b"camring/1";

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
    /// A fingerprint is not 64 hexadecimal digits.
    #[error("bad SHA-256 fingerprint {0:?}: expected 64 hexadecimal digits (colons allowed)")]
    Fingerprint(String),
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

/// SHA-256 of a DER certificate, lower-case hex (64 digits).
pub fn fingerprint(cert: &[u8]) -> String {
    Sha256::digest(cert)
        .iter()
        .fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Parses a fingerprint as printed (`ab12…`), also with colons or upper case
/// (`AB:12:…`, as `openssl x509 -fingerprint -sha256` prints it).
pub fn parse_fingerprint(text: &str) -> Result<[u8; 32], TlsError> {
    let bad = || TlsError::Fingerprint(text.to_owned());
    let digits: Vec<u8> = text
        .trim()
        .bytes()
        .filter(|&b| b != b':')
        .map(|b| (b as char).to_digit(16).map(|d| d as u8))
        .collect::<Option<_>>()
        .ok_or_else(bad)?;
    if digits.len() != 64 {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(digits.chunks(2)) {
        *o = pair[0] << 4 | pair[1];
    }
    Ok(out)
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
        let got: [u8; 32] = Sha256::digest(end_entity.as_ref()).into();
        if got == self.pin {
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
    fn fingerprints_parse_in_both_forms() {
        let id = Identity::generate(&["localhost".into(), "127.0.0.1".into()]).unwrap();
        let hex = id.fingerprint();
        assert_eq!(hex.len(), 64);
        let colons = hex
            .as_bytes()
            .chunks(2)
            .map(|p| std::str::from_utf8(p).unwrap().to_uppercase())
            .collect::<Vec<_>>()
            .join(":");
        assert_eq!(
            parse_fingerprint(&hex).unwrap(),
            parse_fingerprint(&colons).unwrap()
        );
        assert!(parse_fingerprint("abc").is_err());
        assert!(parse_fingerprint(&format!("{}zz", &hex[..62])).is_err());
    }

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
        assert!(matches!(Trust::ca_file(&cert).unwrap(), Trust::Roots(r) if r == id.certs));
        assert!(Identity::from_pem_files(&key, &key).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(server_crypto(&back).is_ok());
        assert!(client_crypto(&Trust::Pinned([0; 32])).is_ok());
    }
}
