//! A certificate authority of the tests' own and a certificate for `127.0.0.1` it signed:
//! for TLS servers the host may trust only through `--ca-file` or `--kv-redis-ca-file`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{self, pki_types::PrivateKeyDer};

/// The CA's certificate (`ca.pem`) and the server's certificate and key (`server.pem`,
/// `server.key`), in a temporary folder.
pub struct TestCa {
    folder: tempfile::TempDir,
    server_certificate: rcgen::Certificate,
    server_key: rcgen::KeyPair,
}

impl TestCa {
    pub fn new() -> Self {
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA certificate");
        let server_key = rcgen::KeyPair::generate().expect("server key");
        let server_certificate = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .expect("server")
            .signed_by(&server_key, &ca)
            .expect("server certificate");
        let folder = tempfile::tempdir().expect("temporary folder");
        let write = |name: &str, pem: String| {
            std::fs::write(folder.path().join(name), pem).expect("write a certificate");
        };
        write("ca.pem", ca.as_ref().pem());
        write("server.pem", server_certificate.pem());
        write("server.key", server_key.serialize_pem());
        Self {
            folder,
            server_certificate,
            server_key,
        }
    }

    /// The folder holding `ca.pem`, `server.pem` and `server.key`.
    pub fn folder(&self) -> &Path {
        self.folder.path()
    }

    /// The CA's certificate, PEM.
    pub fn ca_file(&self) -> PathBuf {
        self.folder().join("ca.pem")
    }

    /// Accepts TLS connections with the server's certificate.
    pub fn acceptor(&self) -> TlsAcceptor {
        let key = PrivateKeyDer::Pkcs8(self.server_key.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![self.server_certificate.der().clone()], key)
        .expect("server config");
        TlsAcceptor::from(Arc::new(config))
    }
}
