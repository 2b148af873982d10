//! Components pulled from an OCI registry (`oci://REGISTRY/REPOSITORY:TAG`), in the
//! layout `wkg oci push` writes: an image manifest whose config has the media type
//! [`WASM_CONFIG_MEDIA_TYPE`] and whose one layer, [`WASM_LAYER_MEDIA_TYPE`], is the
//! component's bytes.
//!
//! A pull has two steps, so that a reload can stop after the cheap one: [`Registry::resolve`]
//! reads the manifest (checking its digest when the reference pins one) and finds the
//! layer; [`Registry::fetch`] downloads the layer, capped in size, and checks its bytes
//! against the layer's digest. The layer's digest is the SHA-256 of the component, so a
//! reload whose layer is the active version's bytes downloads nothing.
//!
//! The client speaks the few calls of the distribution API a pull needs (a manifest, a
//! blob, the token exchange, redirects to blob storage) over the host's own hyper and
//! rustls, one connection per call: pulls are rare, and a general registry client
//! (a second HTTP stack, regex, date handling) would have grown the image past its size
//! budget by a fifth.

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::ServerName;

use crate::engine::ComponentBytes;

/// How a component reference starts.
pub const SCHEME: &str = "oci://";

/// The config media type of a Wasm artifact (the CNCF TAG Runtime layout `wkg` pushes).
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";

/// The media type of the layer that holds the component.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";

/// The environment variables that hold registry credentials. They are not flags, so the
/// password never shows in a process listing.
pub const USERNAME_ENV: &str = "WASI_HOST_REGISTRY_USERNAME";
/// See [`USERNAME_ENV`].
pub const PASSWORD_ENV: &str = "WASI_HOST_REGISTRY_PASSWORD";

/// Manifests asked for: every kind a registry may hold under a tag, so that one that is
/// not a component (a container image, a multi-platform index) is named in the error
/// rather than refused by the registry with a vague "not acceptable".
const ACCEPTED_MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

/// Largest manifest read; a component's is a few hundred bytes.
const MAX_MANIFEST_SIZE: usize = 4 << 20;

/// Largest answer read from a token endpoint or as an error body.
const MAX_SMALL_BODY: usize = 64 << 10;

/// Redirects followed for one call (blob downloads are usually sent to storage once).
const MAX_REDIRECTS: usize = 5;

/// What a pull says when bytes do not match their digest.
const DIGEST_MISMATCH: &str = "the registry sent content that does not match its digest";

/// What a pull says when the registry has nothing under the reference.
const MISSING: &str = "no such repository, tag or digest in the registry";

/// Longest a connection to the registry may take to open, TLS included.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest the registry may take to answer a call, body included.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// `oci://REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST]`, with the registry named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentReference {
    registry: String,
    repository: String,
    tag: Option<String>,
    /// `sha256:HEX`, when the reference pins the manifest.
    digest: Option<String>,
}

impl ComponentReference {
    /// The registry, as `HOST[:PORT]`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The tag or the digest to ask the registry for: the digest when pinned.
    fn manifest_reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// This reference pinned to `digest`, its tag kept for people reading it.
    fn pinned(&self, digest: String) -> Self {
        Self {
            digest: Some(digest),
            ..self.clone()
        }
    }
}

impl FromStr for ComponentReference {
    type Err = anyhow::Error;

    fn from_str(source: &str) -> Result<Self> {
        let usage =
            "expected oci://REGISTRY/REPOSITORY:TAG or oci://REGISTRY/REPOSITORY@sha256:DIGEST";
        let name = source
            .strip_prefix(SCHEME)
            .with_context(|| format!("`{source}` is not a registry reference; {usage}"))?;
        let invalid = |what: &str| anyhow!("`{source}` {what}; {usage}");
        let (registry, rest) = name
            .split_once('/')
            .ok_or_else(|| invalid("does not name its registry"))?;
        // As Docker reads names: a first part without `.` or `:` is a path, not a host,
        // and a reference to a component always names its registry.
        if !(registry.contains(['.', ':']) || registry == "localhost") {
            return Err(invalid("does not name its registry"));
        }
        let (rest, digest) = match rest.split_once('@') {
            Some((rest, digest)) => {
                let hex = digest
                    .strip_prefix("sha256:")
                    .filter(|hex| is_sha256_hex(hex))
                    .ok_or_else(|| invalid("has a digest that is not sha256:64 hex digits"))?;
                (rest, Some(format!("sha256:{hex}")))
            }
            None => (rest, None),
        };
        let (repository, tag) = match rest.rsplit_once(':') {
            Some((repository, tag)) if !tag.contains('/') => (repository, Some(tag)),
            _ => (rest, None),
        };
        let part_ok = |part: &str| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
        };
        if !repository.split('/').all(part_ok) {
            return Err(invalid(
                "has a repository name that is not lower-case letters, digits, `.`, `_`, `-` and `/`",
            ));
        }
        let tag_ok = |tag: &str| {
            (1..=128).contains(&tag.len())
                && !tag.starts_with(['.', '-'])
                && tag
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        };
        if tag.is_some_and(|tag| !tag_ok(tag)) {
            return Err(invalid("has an invalid tag"));
        }
        Ok(Self {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            tag: tag.map(str::to_owned),
            digest,
        })
    }
}

impl fmt::Display for ComponentReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// How to reach registries.
#[derive(Clone, Default)]
pub struct RegistryConfig {
    /// Registries (`HOST[:PORT]`) spoken to over plain HTTP; every other one over HTTPS.
    pub insecure: Vec<String>,
    /// A user name and password, or anonymous access when `None`.
    pub credentials: Option<(String, String)>,
    /// Largest component pulled, in bytes.
    pub max_size: u64,
}

// The password stays out of debug output.
impl fmt::Debug for RegistryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistryConfig")
            .field("insecure", &self.insecure)
            .field(
                "username",
                &self.credentials.as_ref().map(|(username, _)| username),
            )
            .field("max_size", &self.max_size)
            .finish_non_exhaustive()
    }
}

/// A client for the registries components are pulled from.
pub struct Registry {
    config: RegistryConfig,
    tls: tokio_rustls::TlsConnector,
}

/// A [`Registry`] made the first time one is needed, so that a host serving a file
/// never pays for setting one up (its trust store is built at creation).
pub struct LazyRegistry {
    config: RegistryConfig,
    client: OnceLock<Registry>,
}

impl LazyRegistry {
    /// A registry client for `config`, not made yet.
    pub fn new(config: RegistryConfig) -> Self {
        Self {
            config,
            client: OnceLock::new(),
        }
    }

    /// The client, made now if this is the first call.
    pub fn get(&self) -> &Registry {
        self.client
            .get_or_init(|| Registry::new(self.config.clone()))
    }
}

/// A component's manifest, read and checked: what [`Registry::fetch`] downloads.
pub struct Resolved {
    /// The reference, pinned to the manifest's digest.
    reference: ComponentReference,
    /// The layer's SHA-256 in lowercase hex: the component's own SHA-256.
    sha256: String,
    /// The layer's size, in bytes.
    size: u64,
}

impl Resolved {
    /// The SHA-256 of the component, in lowercase hex.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }
}

impl fmt::Display for Resolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.reference.fmt(f)
    }
}

/// The parts of an image manifest, or of an image index, that a pull reads.
#[derive(Deserialize)]
struct Manifest {
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    /// Present in an image index only.
    manifests: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: String,
    size: u64,
}

/// Why a call to a registry failed, sorted by what the user should be told.
#[derive(Debug)]
enum CallError {
    Connect(std::io::Error),
    Tls(std::io::Error),
    Timeout,
    Http(anyhow::Error),
    Status(StatusCode),
}

impl Registry {
    /// A client for registries as `config` says to reach them.
    pub fn new(config: RegistryConfig) -> Self {
        Self {
            config,
            tls: crate::tls::connector(),
        }
    }

    /// Pulls the component `reference` names: [`Self::resolve`], then [`Self::fetch`].
    pub async fn pull(&self, reference: &ComponentReference) -> Result<ComponentBytes> {
        let resolved = self.resolve(reference).await?;
        self.fetch(&resolved).await
    }

    /// Reads the manifest `reference` names and checks that it is a component's.
    pub async fn resolve(&self, reference: &ComponentReference) -> Result<Resolved> {
        self.resolve_inner(reference)
            .await
            .with_context(|| format!("cannot pull `{reference}`"))
    }

    async fn resolve_inner(&self, reference: &ComponentReference) -> Result<Resolved> {
        let url = self.url(reference, "manifests", reference.manifest_reference());
        let body = self
            .get(reference, &url, ACCEPTED_MANIFESTS, MAX_MANIFEST_SIZE)
            .await?;
        let digest = format!("sha256:{:x}", Sha256::digest(&body));
        if let Some(pinned) = &reference.digest {
            ensure!(*pinned == digest, DIGEST_MISMATCH);
        }
        let manifest: Manifest =
            serde_json::from_slice(&body).context("the registry sent an unreadable manifest")?;
        let expected = format!(
            "expected a Wasm component: config `{WASM_CONFIG_MEDIA_TYPE}` and one \
             `{WASM_LAYER_MEDIA_TYPE}` layer, as `wkg oci push` writes"
        );
        if manifest.manifests.is_some() {
            bail!("it is a multi-platform image index, not a Wasm component; {expected}");
        }
        let config = manifest
            .config
            .as_ref()
            .map_or("", |c| c.media_type.as_str());
        let layers: Vec<&str> = manifest
            .layers
            .iter()
            .map(|l| l.media_type.as_str())
            .collect();
        if config != WASM_CONFIG_MEDIA_TYPE || layers != [WASM_LAYER_MEDIA_TYPE] {
            bail!(
                "it is not a Wasm component: its config is `{config}` and its layers are \
                 [{}]; {expected}",
                layers.join(", ")
            );
        }
        let layer = &manifest.layers[0];
        let sha256 = match layer.digest.split_once(':') {
            Some(("sha256", hex)) if is_sha256_hex(hex) => hex.to_owned(),
            _ => bail!("its layer's digest `{}` is not a SHA-256", layer.digest),
        };
        ensure!(
            layer.size <= self.config.max_size,
            "the component is {} bytes, more than the limit of {} (--max-pull-size)",
            layer.size,
            self.config.max_size
        );
        Ok(Resolved {
            reference: reference.pinned(digest),
            sha256,
            size: layer.size,
        })
    }

    /// Downloads the component `resolved` found, and checks its bytes against the
    /// layer's size and digest: only bytes that match are returned.
    pub async fn fetch(&self, resolved: &Resolved) -> Result<ComponentBytes> {
        let bytes = self
            .fetch_inner(resolved)
            .await
            .with_context(|| format!("cannot pull `{resolved}`"))?;
        ComponentBytes::uploaded(bytes.to_vec(), resolved.to_string()).map_err(anyhow::Error::from)
    }

    async fn fetch_inner(&self, resolved: &Resolved) -> Result<Bytes> {
        let reference = &resolved.reference;
        let digest = format!("sha256:{}", resolved.sha256);
        let url = self.url(reference, "blobs", &digest);
        // One byte over the declared size shows a registry that sends too much.
        let limit = usize::try_from(resolved.size.saturating_add(1)).unwrap_or(usize::MAX);
        let bytes = self.get(reference, &url, "*/*", limit).await?;
        ensure!(
            bytes.len() as u64 == resolved.size,
            "the registry sent {} bytes, not the {} the manifest declares",
            bytes.len(),
            resolved.size
        );
        let actual = format!("{:x}", Sha256::digest(&bytes));
        ensure!(
            actual == resolved.sha256,
            "{DIGEST_MISMATCH}: expected sha256:{}, got sha256:{actual}",
            resolved.sha256
        );
        Ok(bytes)
    }

    fn url(&self, reference: &ComponentReference, kind: &str, name: &str) -> String {
        let scheme = if self.is_insecure(reference.registry()) {
            "http"
        } else {
            "https"
        };
        format!(
            "{scheme}://{}/v2/{}/{kind}/{name}",
            reference.registry(),
            reference.repository
        )
    }

    fn is_insecure(&self, registry: &str) -> bool {
        self.config
            .insecure
            .iter()
            .any(|insecure| insecure == registry)
    }

    /// `GET url`, authenticating as the registry asks and following redirects, and the
    /// body of a `200`, up to `limit` bytes.
    async fn get(
        &self,
        reference: &ComponentReference,
        url: &str,
        accept: &str,
        limit: usize,
    ) -> Result<Bytes> {
        let registry = reference.registry();
        let mut authorization = None;
        let mut response = self.call(url, accept, authorization.as_ref()).await;
        if let Ok(unauthorized) = &response
            && unauthorized.status() == StatusCode::UNAUTHORIZED
        {
            authorization = self.authorize(reference, unauthorized.headers()).await?;
            if authorization.is_some() {
                response = self.call(url, accept, authorization.as_ref()).await;
            }
        }
        let denied = || {
            anyhow!(
                "the registry `{registry}` refused access (set ${USERNAME_ENV} and \
                 ${PASSWORD_ENV} for a private repository)"
            )
        };
        let response = match response {
            Ok(response) => response,
            Err(CallError::Tls(error)) if !self.is_insecure(registry) => {
                return Err(anyhow::Error::new(error).context(format!(
                    "the registry `{registry}` failed the TLS handshake (if it serves plain \
                     HTTP, name it with --insecure-registry {registry})"
                )));
            }
            Err(CallError::Connect(error) | CallError::Tls(error)) => {
                return Err(anyhow::Error::new(error)
                    .context(format!("cannot reach the registry `{registry}`")));
            }
            Err(CallError::Timeout) => {
                bail!("the registry `{registry}` did not answer in time")
            }
            Err(CallError::Http(error)) => {
                return Err(error.context(format!("the call to the registry `{registry}` failed")));
            }
            Err(CallError::Status(status)) => bail!("the registry `{registry}` answered {status}"),
        };
        match response.status() {
            StatusCode::OK => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => return Err(denied()),
            StatusCode::NOT_FOUND => bail!(MISSING),
            status => bail!("the registry `{registry}` answered {status}"),
        }
        match tokio::time::timeout(
            CALL_TIMEOUT,
            Limited::new(response.into_body(), limit).collect(),
        )
        .await
        {
            Ok(Ok(body)) => Ok(body.to_bytes()),
            Ok(Err(error)) if error.is::<http_body_util::LengthLimitError>() => {
                bail!(
                    "the registry sent more than the {} bytes expected",
                    limit.saturating_sub(1).max(1)
                )
            }
            Ok(Err(error)) => Err(anyhow!(error).context("the download from the registry failed")),
            Err(_elapsed) => bail!("the registry `{registry}` did not finish sending in time"),
        }
    }

    /// The `Authorization` header a registry's `401` asks for: a bearer token from its
    /// token service (`Bearer realm=…`), or the credentials themselves (`Basic`).
    async fn authorize(
        &self,
        reference: &ComponentReference,
        challenged: &HeaderMap,
    ) -> Result<Option<HeaderValue>> {
        let challenge = challenged
            .get(header::WWW_AUTHENTICATE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        let basic = self.config.credentials.as_ref().map(|(user, password)| {
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            HeaderValue::try_from(format!("Basic {encoded}"))
        });
        let Some(parameters) = strip_prefix_ignore_case(challenge, "Bearer ") else {
            return basic
                .transpose()
                .context("the credentials are not a valid header");
        };
        let parameters = challenge_parameters(parameters);
        let parameter = |name: &str| {
            parameters
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.as_str())
        };
        let realm = parameter("realm")
            .context("the registry asked for a token without naming where to get it")?;
        let scope = format!("repository:{}:pull", reference.repository);
        let query = {
            let mut query = form_urlencoded::Serializer::new(String::new());
            if let Some(service) = parameter("service") {
                query.append_pair("service", service);
            }
            query.append_pair("scope", parameter("scope").unwrap_or(&scope));
            query.finish()
        };
        let separator = if realm.contains('?') { '&' } else { '?' };
        let url = format!("{realm}{separator}{query}");
        let basic = basic
            .transpose()
            .context("the credentials are not a valid header")?;
        let response = self
            .call(&url, "application/json", basic.as_ref())
            .await
            .map_err(|error| anyhow!("the registry's token service failed: {error:?}"))?;
        if !response.status().is_success() {
            // Refused: the call it was for is answered `401` again, and reported so.
            return Ok(None);
        }
        let body = Limited::new(response.into_body(), MAX_SMALL_BODY)
            .collect()
            .await
            .map_err(|error| anyhow!(error).context("the registry's token service failed"))?
            .to_bytes();
        #[derive(Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let token: Token =
            serde_json::from_slice(&body).context("the registry's token service sent no token")?;
        let token = token
            .token
            .or(token.access_token)
            .context("the registry's token service sent no token")?;
        let value = HeaderValue::try_from(format!("Bearer {token}"))
            .context("the registry's token is not a valid header")?;
        Ok(Some(value))
    }

    /// One `GET`, following redirects; `authorization` goes only to the host it was
    /// meant for.
    async fn call(
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

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// The `key="value"` pairs of a `WWW-Authenticate` challenge; values may be quoted and
/// hold commas (`scope="repository:a:pull,push"`).
fn challenge_parameters(text: &str) -> Vec<(String, String)> {
    let mut parameters = Vec::new();
    let mut rest = text.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key.trim().trim_start_matches(',').trim().to_owned();
        let (value, remaining) = match after.strip_prefix('"') {
            Some(quoted) => match quoted.split_once('"') {
                Some((value, remaining)) => (value, remaining),
                None => (quoted, ""),
            },
            None => after.split_once(',').unwrap_or((after, "")),
        };
        parameters.push((key, value.trim().to_owned()));
        rest = remaining.trim_start_matches(',').trim();
    }
    parameters
}

fn is_sha256_hex(hex: &str) -> bool {
    hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_name_their_registry() {
        let reference: ComponentReference = "oci://127.0.0.1:5000/apps/hello:v1".parse().unwrap();
        assert_eq!(reference.registry(), "127.0.0.1:5000");
        assert_eq!(reference.to_string(), "oci://127.0.0.1:5000/apps/hello:v1");
        assert_eq!(reference.manifest_reference(), "v1");
        let digest = format!("sha256:{}", "a".repeat(64));
        let pinned: ComponentReference = format!("oci://ghcr.io/org/hello:v1@{digest}")
            .parse()
            .unwrap();
        assert_eq!(
            pinned.to_string(),
            format!("oci://ghcr.io/org/hello:v1@{digest}")
        );
        assert_eq!(pinned.manifest_reference(), digest);
        let untagged: ComponentReference = "oci://localhost/hello".parse().unwrap();
        assert_eq!(untagged.manifest_reference(), "latest");

        for wrong in [
            "oci://hello:v1",
            "oci://library/hello",
            "oci://ghcr.io/Hello",
            "oci://ghcr.io/hello@sha256:abc",
            "oci://ghcr.io//hello",
            "oci://ghcr.io/hello:-v1",
        ] {
            assert!(wrong.parse::<ComponentReference>().is_err(), "{wrong}");
        }
    }

    #[test]
    fn challenges_are_read_with_quoted_commas() {
        let parameters = challenge_parameters(
            r#"realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(
            parameters,
            [
                ("realm".to_owned(), "https://auth.example/token".to_owned()),
                ("service".to_owned(), "registry.example".to_owned()),
                ("scope".to_owned(), "repository:a/b:pull,push".to_owned()),
            ]
        );
    }

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
