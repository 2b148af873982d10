//! The TLS settings of every connection the host makes (guests' outbound requests and
//! registry pulls): rustls with ring, Mozilla's roots built in (a `FROM scratch` image
//! has no trust store of its own) and those of `--ca-file`, and HTTP/1.1.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, ensure};
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::pki_types::pem::PemObject;

/// The certificate authorities servers are verified against.
#[derive(Debug, Clone)]
pub struct TrustedRoots(Arc<rustls::RootCertStore>);

impl TrustedRoots {
    /// Mozilla's roots alone.
    pub fn built_in() -> Self {
        Self(Arc::new(mozilla()))
    }

    /// Mozilla's roots, and the certificates in the PEM file `extra` if there is one.
    pub fn with_file(extra: Option<&Path>) -> Result<Self> {
        let Some(file) = extra else {
            return Ok(Self::built_in());
        };
        let shown = file.display();
        let pem = std::fs::read(file).with_context(|| format!("cannot read `{shown}`"))?;
        let certificates = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("`{shown}` is not a PEM certificate file"))?;
        ensure!(
            !certificates.is_empty(),
            "`{shown}` holds no PEM certificate"
        );
        let mut roots = mozilla();
        for certificate in certificates {
            roots
                .add(certificate)
                .with_context(|| format!("a certificate in `{shown}` cannot be a root"))?;
        }
        Ok(Self(Arc::new(roots)))
    }

    /// A connector that verifies servers against these roots.
    pub fn connector(&self) -> TlsConnector {
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default TLS versions")
        .with_root_certificates(self.0.clone())
        .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        TlsConnector::from(Arc::new(config))
    }
}

fn mozilla() -> rustls::RootCertStore {
    rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}
