//! One registry call on the wire: a `GET` over the host's own hyper and rustls, one
//! connection per call (pulls are rare), following redirects, the whole of it (body
//! included) under one deadline.
//!
//! Where a call may go is decided here. The registry the operator named is trusted with
//! its own origin; every other URL a call reaches (a redirect to blob storage, the token
//! service a challenge names) was chosen by the registry, and must be HTTPS at a public
//! address, unless the registry is named by `--insecure-registry`, which trusts it with
//! plain HTTP and internal addresses alike; a registry that is itself at an internal
//! address may send calls to internal addresses, still over HTTPS. An `Authorization` header goes only to the
//! origin (scheme, host and port) it was given for, never on after a redirect.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::rustls::pki_types::ServerName;

use crate::http::tls::TrustedRoots;
use crate::sandbox::outbound::{Host, ResolveOverride, Resolver, non_public};

/// Redirects followed for one call (blob downloads are usually sent to storage once).
const MAX_REDIRECTS: usize = 5;

/// Longest a connection may take to open, TLS included (within the call's deadline).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a call to a registry failed, sorted by what the user should be told.
#[derive(Debug)]
pub enum CallError {
    Connect(std::io::Error),
    Tls(std::io::Error),
    Timeout,
    Http(anyhow::Error),
    Status(StatusCode),
    /// A URL the registry chose that the rules above forbid.
    Refused(String),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(error) => write!(f, "cannot connect: {error}"),
            Self::Tls(error) => write!(f, "the TLS handshake failed: {error}"),
            Self::Timeout => f.write_str("no answer in time (--registry-timeout)"),
            Self::Http(error) => write!(f, "{error:#}"),
            Self::Status(status) => write!(f, "it answered {status}"),
            Self::Refused(why) => f.write_str(why),
        }
    }
}

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// More than the limit.
    TooLarge,
    /// Not all of it before the call's deadline.
    Timeout,
    Failed(hyper::Error),
}

impl fmt::Display for BodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge => f.write_str("the body is larger than expected"),
            Self::Timeout => f.write_str("the body did not arrive in time (--registry-timeout)"),
            Self::Failed(error) => write!(f, "{error}"),
        }
    }
}

/// Where one call goes, and what it may carry.
pub struct Call<'a> {
    pub url: &'a str,
    /// Request headers, `Accept` and the like; sent on every hop.
    pub headers: HeaderMap,
    /// Sent only to the origin of `url`.
    pub authorization: Option<&'a HeaderValue>,
    /// The registry whose rules apply: URLs off its origin are checked against them.
    pub registry: &'a Origin,
}

/// A registry's origin, and whether the operator trusts it with plain HTTP and internal
/// addresses (`--insecure-registry`), which extends to wherever it sends a call.
#[derive(Debug, Clone)]
pub struct Origin {
    scheme: Scheme,
    authority: Authority,
    pub trusted: bool,
}

impl Origin {
    /// The origin of `url`, trusted or not.
    pub fn of(url: &Uri, trusted: bool) -> Result<Self> {
        let scheme = url.scheme().cloned().context("a URL without a scheme")?;
        let authority = url.authority().cloned().context("a URL without a host")?;
        Ok(Self {
            scheme,
            authority,
            trusted,
        })
    }

    /// Whether `url` has this origin.
    pub fn holds(&self, url: &Uri) -> bool {
        url.scheme() == Some(&self.scheme) && url.authority() == Some(&self.authority)
    }

    /// `HOST[:PORT]`.
    pub fn authority(&self) -> &str {
        self.authority.as_str()
    }
}

/// An answer, the URL that gave it, and the deadline its body must arrive by.
pub struct Answer {
    pub response: Response<Incoming>,
    /// The URL that answered, after redirects.
    pub url: Uri,
    deadline: Instant,
}

impl Answer {
    pub fn status(&self) -> StatusCode {
        self.response.status()
    }

    /// The body, up to `limit` bytes, read before the call's deadline.
    pub async fn body(self, limit: usize) -> Result<Bytes, BodyError> {
        let collect = Limited::new(self.response.into_body(), limit).collect();
        match tokio::time::timeout_at(self.deadline, collect).await {
            Ok(Ok(body)) => Ok(body.to_bytes()),
            Ok(Err(error)) => match error.downcast::<hyper::Error>() {
                Ok(error) => Err(BodyError::Failed(*error)),
                // The one other error `Limited` gives.
                Err(_length_limit) => Err(BodyError::TooLarge),
            },
            Err(_elapsed) => Err(BodyError::Timeout),
        }
    }
}

/// Makes registry calls, over TLS unless the URL says `http`.
pub struct Transport {
    tls: tokio_rustls::TlsConnector,
    resolver: Resolver,
    /// Longest one call may take, from connecting to its body's last byte.
    timeout: Duration,
}

impl Transport {
    /// A transport trusting `roots`, resolving the names in `resolve` itself, each call
    /// limited to `timeout`.
    pub fn new(resolve: &[ResolveOverride], roots: &TrustedRoots, timeout: Duration) -> Self {
        Self {
            tls: roots.connector(),
            resolver: Resolver::new(resolve),
            timeout,
        }
    }

    /// One `GET`, following redirects as the rules above allow.
    pub async fn call(&self, call: Call<'_>) -> Result<Answer, CallError> {
        let deadline = Instant::now() + self.timeout;
        let mut uri: Uri = call
            .url
            .parse()
            .map_err(|error| CallError::Http(anyhow!("invalid URL `{}`: {error}", call.url)))?;
        let first = uri.clone();
        for _ in 0..=MAX_REDIRECTS {
            let same_origin =
                uri.scheme() == first.scheme() && uri.authority() == first.authority();
            let authorization = call.authorization.filter(|_| same_origin);
            let hop = self.call_once(&uri, &call.headers, authorization, call.registry);
            let response = tokio::time::timeout_at(deadline, hop)
                .await
                .map_err(|_elapsed| CallError::Timeout)??;
            if !response.status().is_redirection() {
                return Ok(Answer {
                    response,
                    url: uri,
                    deadline,
                });
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
        headers: &HeaderMap,
        authorization: Option<&HeaderValue>,
        registry: &Origin,
    ) -> Result<Response<Incoming>, CallError> {
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(CallError::Refused(format!("`{uri}` is not an HTTP URL"))),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| CallError::Http(anyhow!("`{uri}` names no host")))?;
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let mut request = Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
            .header(header::HOST, authority.as_str())
            .header(
                header::USER_AGENT,
                concat!("wasi-host/", env!("CARGO_PKG_VERSION")),
            )
            .body(Empty::<Bytes>::new())
            .map_err(|error| CallError::Http(error.into()))?;
        request.headers_mut().extend(headers.clone());
        if let Some(authorization) = authorization {
            request
                .headers_mut()
                .insert(header::AUTHORIZATION, authorization.clone());
        }
        let connect = async {
            let tcp = self.connect(uri, port, registry).await?;
            if !https {
                return Ok(Io::Plain(tcp));
            }
            let host = authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']');
            let name = ServerName::try_from(host.to_owned())
                .map_err(|error| CallError::Http(anyhow!("`{host}`: {error}")))?;
            let tls = self.tls.connect(name, tcp).await.map_err(CallError::Tls)?;
            Ok(Io::Tls(Box::new(tls)))
        };
        let io = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_elapsed| CallError::Timeout)??;
        match io {
            Io::Plain(tcp) => send(TokioIo::new(tcp), request).await,
            Io::Tls(tls) => send(TokioIo::new(tls), request).await,
        }
    }

    /// A connection to one of the addresses `uri`'s host resolves to, each checked
    /// against `registry`'s rules when `uri` is off its origin.
    async fn connect(
        &self,
        uri: &Uri,
        port: u16,
        registry: &Origin,
    ) -> Result<TcpStream, CallError> {
        let text = uri.host().unwrap_or_default();
        let host = Host::parse(text)
            .ok_or_else(|| CallError::Http(anyhow!("`{text}` is not a host name")))?;
        let addresses = self
            .resolver
            .resolve(&host, port)
            .await
            .map_err(CallError::Connect)?;
        if !registry.holds(uri) {
            let internal = self.is_internal(registry, port).await;
            check_off_origin(registry, internal, uri, &addresses).map_err(CallError::Refused)?;
        }
        let sockets: Vec<SocketAddr> = addresses
            .iter()
            .map(|address| SocketAddr::new(*address, port))
            .collect();
        TcpStream::connect(&sockets[..])
            .await
            .map_err(CallError::Connect)
    }
}

impl Transport {
    /// Whether every address `registry`'s host resolves to is internal (not public).
    async fn is_internal(&self, registry: &Origin, port: u16) -> bool {
        let Some(host) = Host::parse(registry.authority.host()) else {
            return false;
        };
        let port = registry.authority.port_u16().unwrap_or(port);
        match self.resolver.resolve(&host, port).await {
            Ok(addresses) => {
                !addresses.is_empty() && addresses.iter().all(|a| non_public(*a).is_some())
            }
            Err(_) => false,
        }
    }
}

/// A connection, plain or over TLS.
enum Io {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

async fn send<T>(
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

/// Whether a call may go to `target`, a URL off `registry`'s origin that the registry
/// chose, at `addresses`: over HTTPS to public addresses only, unless the registry is
/// trusted, or (for the addresses) `internal` itself. The reason, when it may not.
fn check_off_origin(
    registry: &Origin,
    internal: bool,
    target: &Uri,
    addresses: &[IpAddr],
) -> Result<(), String> {
    if registry.trusted {
        return Ok(());
    }
    let host = target.authority().map_or("", Authority::as_str);
    if target.scheme() != Some(&Scheme::HTTPS) {
        return Err(format!(
            "the registry `{}` sent the call to `{host}` over plain HTTP",
            registry.authority()
        ));
    }
    let non_public = addresses
        .iter()
        .find_map(|address| non_public(*address).map(|kind| (address, kind)));
    if let Some((address, kind)) = non_public.filter(|_| !internal) {
        return Err(format!(
            "the registry `{}` sent the call to `{host}`, a {kind} address ({address}); name \
             the registry with --insecure-registry if it is meant to",
            registry.authority()
        ));
    }
    Ok(())
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

    #[test]
    fn a_registry_may_send_calls_over_https_to_public_addresses_only() {
        let url = |text: &str| text.parse::<Uri>().unwrap();
        let registry = Origin::of(&url("https://registry.example"), false).unwrap();
        let public: [IpAddr; 1] = ["203.0.114.7".parse().unwrap()];
        let storage = url("https://storage.example/blob");
        assert_eq!(
            check_off_origin(&registry, false, &storage, &public),
            Ok(())
        );

        let downgrade = url("http://storage.example/blob");
        let error = check_off_origin(&registry, false, &downgrade, &public).unwrap_err();
        assert!(error.contains("over plain HTTP"), "{error}");
        for (internal, kind) in [
            ("127.0.0.1", "loopback"),
            ("10.1.2.3", "private"),
            ("169.254.169.254", "link-local"),
            ("::1", "loopback"),
        ] {
            let addresses = [public[0], internal.parse().unwrap()];
            let error = check_off_origin(&registry, false, &storage, &addresses).unwrap_err();
            assert!(error.contains(&format!("a {kind} address")), "{error}");
            // A registry that is internal itself may send calls inside, over HTTPS.
            assert_eq!(
                check_off_origin(&registry, true, &storage, &addresses),
                Ok(())
            );
        }
        let error = check_off_origin(&registry, true, &downgrade, &public).unwrap_err();
        assert!(error.contains("over plain HTTP"), "{error}");

        // A registry named insecure is trusted with wherever it sends a call.
        let trusted = Origin::of(&url("http://10.0.0.5:5000"), true).unwrap();
        let loopback: [IpAddr; 1] = ["127.0.0.1".parse().unwrap()];
        assert_eq!(
            check_off_origin(&trusted, false, &downgrade, &loopback),
            Ok(())
        );
        assert!(registry.holds(&url("https://registry.example/v2/")));
        assert!(!registry.holds(&url("http://registry.example/v2/")));
    }
}
