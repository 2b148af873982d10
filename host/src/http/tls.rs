//! The TLS settings of every connection the host makes (guests' outbound requests and
//! registry pulls): rustls with ring, Mozilla's roots built in (a `FROM scratch` image
//! has no trust store of its own), and HTTP/1.1.

use std::sync::Arc;

use tokio_rustls::TlsConnector;
use tokio_rustls::rustls;

/// A connector that verifies servers against Mozilla's roots.
pub fn connector() -> TlsConnector {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("the ring provider supports the default TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    TlsConnector::from(Arc::new(config))
}
