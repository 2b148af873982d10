//! Components pulled from an OCI registry (`oci://REGISTRY/REPOSITORY:TAG`), in the
//! layout `wkg oci push` writes: an image manifest whose config has the media type
//! [`WASM_CONFIG_MEDIA_TYPE`] and whose one layer, [`WASM_LAYER_MEDIA_TYPE`], is the
//! component's bytes.
//!
//! A pull has two steps, so that a reload can stop after the cheap one: [`Registry::resolve`]
//! reads the manifest (checking its digest when the reference pins one) and finds the
//! layer; [`Registry::fetch`] downloads the layer, capped in size, and checks its bytes
//! against the layer's digest. The layer's digest is the SHA-256 of the component, so a
//! reload whose layer is the active version's bytes downloads nothing. What comes back
//! is bytes: compiling them is the caller's business.
//!
//! The client speaks the few calls of the distribution API a pull needs (a manifest, a
//! blob, the token exchange, redirects to blob storage) over the host's own hyper and
//! rustls (see [`transport`]): a general registry client (a second HTTP stack, regex,
//! date handling) would have grown the image past its size budget by a fifth.

mod auth;
mod reference;
mod transport;

use std::fmt;
use std::sync::OnceLock;

use anyhow::{Context, Result, anyhow, bail, ensure};
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use sha2::{Digest, Sha256};

pub use self::reference::{ComponentReference, SCHEME};

use self::reference::is_sha256_hex;
use self::transport::{CALL_TIMEOUT, CallError, Transport};

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

/// What a pull says when bytes do not match their digest.
const DIGEST_MISMATCH: &str = "the registry sent content that does not match its digest";

/// What a pull says when the registry has nothing under the reference.
const MISSING: &str = "no such repository, tag or digest in the registry";

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
    transport: Transport,
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

impl Registry {
    /// A client for registries as `config` says to reach them.
    pub fn new(config: RegistryConfig) -> Self {
        Self {
            config,
            transport: Transport::new(),
        }
    }

    /// Pulls the component `reference` names: [`Self::resolve`], then [`Self::fetch`].
    pub async fn pull(&self, reference: &ComponentReference) -> Result<(Resolved, Bytes)> {
        let resolved = self.resolve(reference).await?;
        let bytes = self.fetch(&resolved).await?;
        Ok((resolved, bytes))
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
        if let Some(pinned) = &reference.digest() {
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
    pub async fn fetch(&self, resolved: &Resolved) -> Result<Bytes> {
        self.fetch_inner(resolved)
            .await
            .with_context(|| format!("cannot pull `{resolved}`"))
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
            reference.repository()
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
        let response = match self.call_authorized(reference, url, accept).await? {
            Ok(response) => response,
            Err(error) => return Err(self.explain(registry, error)),
        };
        match response.status() {
            StatusCode::OK => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => bail!(
                "the registry `{registry}` refused access (set ${USERNAME_ENV} and \
                 ${PASSWORD_ENV} for a private repository)"
            ),
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

    /// One call, made again with the authorization a `401` asks for, when there is one.
    async fn call_authorized(
        &self,
        reference: &ComponentReference,
        url: &str,
        accept: &str,
    ) -> Result<Result<Response<Incoming>, CallError>> {
        let response = self.transport.call(url, accept, None).await;
        let Ok(unauthorized) = &response else {
            return Ok(response);
        };
        if unauthorized.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        let authorization = auth::authorize(
            &self.transport,
            self.config.credentials.as_ref(),
            reference,
            unauthorized.headers(),
        )
        .await?;
        Ok(match authorization {
            Some(authorization) => self.transport.call(url, accept, Some(&authorization)).await,
            None => response,
        })
    }

    /// What to tell the user about a call to `registry` that got no answer.
    fn explain(&self, registry: &str, error: CallError) -> anyhow::Error {
        match error {
            CallError::Tls(error) if !self.is_insecure(registry) => anyhow::Error::new(error)
                .context(format!(
                    "the registry `{registry}` failed the TLS handshake (if it serves plain \
                     HTTP, name it with --insecure-registry {registry})"
                )),
            CallError::Connect(error) | CallError::Tls(error) => {
                anyhow::Error::new(error).context(format!("cannot reach the registry `{registry}`"))
            }
            CallError::Timeout => anyhow!("the registry `{registry}` did not answer in time"),
            CallError::Http(error) => {
                error.context(format!("the call to the registry `{registry}` failed"))
            }
            CallError::Status(status) => anyhow!("the registry `{registry}` answered {status}"),
        }
    }
}
