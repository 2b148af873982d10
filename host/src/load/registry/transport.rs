//! One registry call on the wire: a `GET` over the host's own hyper and rustls, one
//! connection per call (pulls are rare), following redirects, each under a timeout.

use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;

/// Redirects followed for one call (blob downloads are usually sent to storage once).
const MAX_REDIRECTS: usize = 5;

/// Longest a connection to the registry may take to open, TLS included.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest the registry may take to answer a call, body included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// Why a call to a registry failed, sorted by what the user should be told.
#[derive(Debug)]
pub enum CallError {
    Connect(std::io::Error),
    Tls(std::io::Error),
    Timeout,
    Http(anyhow::Error),
    Status(StatusCode),
}

/// Makes registry calls, over TLS unless the URL says `http`.
pub struct Transport {
    tls: tokio_rustls::TlsConnector,
}

impl Transport {
    /// A transport trusting the host's built-in roots.
    pub fn new() -> Self {
        Self {
            tls: crate::http::tls::connector(),
        }
    }

    /// One `GET`, following redirects; `authorization` goes only to the host it was
    /// meant for.
    pub async fn call(
        &self,
        url: &str,
        accept: &str,
        authorization: Option<&HeaderValue>,
    ) -> Result<Response<Incoming>, CallError> {
        let mut uri: Uri = url
            .parse()
            .map_err(|error| CallError::Http(anyhow!("invalid URL `{url}`: {error}")))?;
        let origin_host = uri.authority().cloned();
        for _ in 0..=MAX_REDIRECTS {
            let same_host = uri.authority() == origin_host.as_ref();
            let response = self
                .call_once(&uri, accept, authorization.filter(|_| same_host))
                .await?;
            if !response.status().is_redirection() {
                return Ok(response);
            }
            let location = response
                .headers()
                .get(header::LOCATION)
                .and_then(|value| value.to_str().ok())
                .ok_or(CallError::Status(response.status()))?;
            uri = resolve_location(&uri, location).map_err(CallError::Http)?;
        }
        Err(CallError::Http(anyhow!(
            "more than {MAX_REDIRECTS} redirects"
        )))
    }

    async fn call_once(
        &self,
        uri: &Uri,
        accept: &str,
        authorization: Option<&HeaderValue>,
    ) -> Result<Response<Incoming>, CallError> {
        let https = uri.scheme_str() == Some("https");
        let host = uri
            .host()
            .ok_or_else(|| CallError::Http(anyhow!("`{uri}` names no host")))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let mut request = Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
            .header(header::HOST, uri.authority().map_or(host, |a| a.as_str()))
            .header(header::ACCEPT, accept)
            .header(
                header::USER_AGENT,
                concat!("wasi-host/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::<Bytes>::new())
            .map_err(|error| CallError::Http(error.into()))?;
        if let Some(authorization) = authorization {
            request
                .headers_mut()
                .insert(header::AUTHORIZATION, authorization.clone());
        }
        let connect = async {
            let tcp = TcpStream::connect((host, port))
                .await
                .map_err(CallError::Connect)?;
            if !https {
                return self.send(TokioIo::new(tcp), request).await;
            }
            let name = ServerName::try_from(host.to_owned())
                .map_err(|error| CallError::Http(anyhow!("`{host}`: {error}")))?;
            let tls = self.tls.connect(name, tcp).await.map_err(CallError::Tls)?;
            self.send(TokioIo::new(tls), request).await
        };
        tokio::time::timeout(CONNECT_TIMEOUT + CALL_TIMEOUT, connect)
            .await
            .map_err(|_elapsed| CallError::Timeout)?
    }

    async fn send<T>(
        &self,
        io: TokioIo<T>,
        request: Request<Empty<Bytes>>,
    ) -> Result<Response<Incoming>, CallError>
    where
        T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
    {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|error| CallError::Http(error.into()))?;
        // Ends once the response body is read, or dropped.
        tokio::spawn(connection);
        sender
            .send_request(request)
            .await
            .map_err(|error| CallError::Http(error.into()))
    }
}

/// The URL a `Location` header points to, relative to `base`.
fn resolve_location(base: &Uri, location: &str) -> Result<Uri> {
    let target: Uri = location
        .parse()
        .with_context(|| format!("invalid redirect `{location}`"))?;
    if target.scheme().is_some() {
        return Ok(target);
    }
    let mut parts = base.clone().into_parts();
    parts.path_and_query = target.path_and_query().cloned();
    Uri::from_parts(parts).with_context(|| format!("invalid redirect `{location}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_resolve_against_the_call() {
        let base: Uri = "https://registry.example/v2/a/blobs/sha256:00"
            .parse()
            .unwrap();
        assert_eq!(
            resolve_location(&base, "/storage/blob?sig=1")
                .unwrap()
                .to_string(),
            "https://registry.example/storage/blob?sig=1"
        );
        assert_eq!(
            resolve_location(&base, "https://cdn.example/blob")
                .unwrap()
                .to_string(),
            "https://cdn.example/blob"
        );
    }
}
