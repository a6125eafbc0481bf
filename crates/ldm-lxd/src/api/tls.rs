//! TLS to a remote LXD server, as the client program does it: the user's
//! client certificate (`client.crt`, `client.key` in the client's config
//! folder) and the server's certificate pinned (`servercerts/REMOTE.crt`,
//! saved by `lxc remote add` when the user accepted its fingerprint). The
//! server must present exactly that certificate; its name and any CA do not
//! count, as for LXD's own client. rustls with ring (DESIGN.md, "Crates").

use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// The TLS settings for one remote.
#[derive(Debug)]
pub struct Tls {
    config: Arc<rustls::ClientConfig>,
}

/// Why the TLS settings could not be made, with the file at fault.
#[derive(Debug)]
pub struct TlsProblem {
    /// The file.
    pub path: std::path::PathBuf,
    /// What is wrong.
    pub why: String,
}

/// ring, not aws-lc-rs (DESIGN.md, "Crates": aws-lc-rs's C build costs
/// more than all of ldm). rustls 0.23.48 marks ring's provider deprecated
/// for its lack of post-quantum key exchange; LXD's own Go client offers
/// none either.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn problem(path: &Path, why: impl std::fmt::Display) -> TlsProblem {
    TlsProblem {
        path: path.to_path_buf(),
        why: why.to_string(),
    }
}

impl Tls {
    /// Reads the client certificate and key and the pinned server
    /// certificate (PEM files).
    pub fn load(
        client_crt: &Path,
        client_key: &Path,
        server_crt: &Path,
    ) -> Result<Tls, TlsProblem> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(client_crt)
            .map_err(|e| problem(client_crt, e))?
            .collect::<Result<_, _>>()
            .map_err(|e| problem(client_crt, e))?;
        if chain.is_empty() {
            return Err(problem(client_crt, "holds no certificate"));
        }
        let key = PrivateKeyDer::from_pem_file(client_key).map_err(|e| problem(client_key, e))?;
        let pinned =
            CertificateDer::from_pem_file(server_crt).map_err(|e| problem(server_crt, e))?;
        let provider = provider();
        let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| problem(client_crt, e))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned {
                cert: pinned.into_owned(),
                provider,
            }))
            .with_client_auth_cert(chain, key)
            .map_err(|e| problem(client_key, e))?;
        Ok(Tls {
            config: Arc::new(config),
        })
    }

    /// A client connection for `host` (its name only goes into SNI).
    pub fn connection(&self, host: &str) -> io::Result<rustls::ClientConnection> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        rustls::ClientConnection::new(Arc::clone(&self.config), name).map_err(io::Error::other)
    }
}

/// Accepts exactly one server certificate, whatever it names.
#[derive(Debug)]
struct Pinned {
    cert: CertificateDer<'static>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.cert.as_ref() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the server's certificate is not the one the client saved for this remote (servercerts/REMOTE.crt)".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
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
        verify_tls13_signature(
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
