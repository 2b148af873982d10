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
mod credentials;
mod logins;
mod metadata;
mod reference;
mod transport;

use std::fmt;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use serde::Deserialize;
use sha2::{Digest, Sha256};

pub use self::credentials::{Credentials, Login};
pub use self::metadata::{DEFAULT_METADATA_HOST, METADATA_HOST_ENV};
pub use self::reference::{ComponentReference, SCHEME};

use self::auth::Challenged;
use self::logins::Logins;
use self::metadata::{METADATA_TIMEOUT, MetadataServer};
use self::reference::is_sha256_hex;
use self::transport::{Answer, BodyError, Call, CallError, Origin, Transport};
use crate::http::tls::TrustedRoots;
use crate::sandbox::outbound::ResolveOverride;

/// The config media type of a Wasm artifact (the CNCF TAG Runtime layout `wkg` pushes).
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";

/// The media type of the layer that holds the component.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";

/// The environment variables that hold a registry login, and the registry it is for.
/// They are not flags, so the password never shows in a process listing.
pub const USERNAME_ENV: &str = "WASI_HOST_REGISTRY_USERNAME";
/// See [`USERNAME_ENV`].
pub const PASSWORD_ENV: &str = "WASI_HOST_REGISTRY_PASSWORD";
/// See [`USERNAME_ENV`].
pub const HOST_ENV: &str = "WASI_HOST_REGISTRY_HOST";

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
#[derive(Debug, Clone, Default)]
pub struct RegistryConfig {
    /// Registries (`HOST[:PORT]`) spoken to over plain HTTP; every other one over HTTPS.
    pub insecure: Vec<String>,
    /// Logins given in the environment, each for its registry.
    pub credentials: Credentials,
    /// A Docker `config.json`-style file of more logins, read at startup.
    pub auth_file: Option<PathBuf>,
    /// Certificates (PEM) trusted besides the built-in roots, read at startup.
    pub ca_file: Option<PathBuf>,
    /// Names resolved to fixed addresses rather than by DNS.
    pub resolve: Vec<ResolveOverride>,
    /// The metadata server's `HOST[:PORT]`.
    pub metadata_host: String,
    /// Longest one registry call may take, body included.
    pub timeout: Duration,
    /// Largest component pulled, in bytes.
    pub max_size: u64,
}

/// A client for the registries components are pulled from.
pub struct Registry {
    config: RegistryConfig,
    logins: Logins,
    transport: Transport,
}

/// A [`Registry`] made the first time one is needed, so that a host serving a file
/// never pays for setting one up (its trust store is built at creation).
pub struct LazyRegistry {
    config: RegistryConfig,
    credentials: Credentials,
    roots: TrustedRoots,
    client: OnceLock<Registry>,
}

impl LazyRegistry {
    /// A registry client for `config`, not made yet; the auth and CA files, if any, are
    /// read now, so that a bad one stops the host at startup.
    pub fn new(config: RegistryConfig) -> Result<Self> {
        let mut credentials = match &config.auth_file {
            Some(path) => Credentials::read_file(path)?,
            None => Credentials::default(),
        };
        // The environment's login wins over the file's for the same registry.
        credentials.merge(&config.credentials);
        let roots = TrustedRoots::with_file(config.ca_file.as_deref())
            .context("cannot set up TLS for registries (--ca-file)")?;
        Ok(Self {
            config,
            credentials,
            roots,
            client: OnceLock::new(),
        })
    }

    /// The client, made now if this is the first call.
    pub fn get(&self) -> &Registry {
        self.client.get_or_init(|| Registry {
            logins: Logins {
                credentials: self.credentials.clone(),
                metadata: MetadataServer::new(self.config.metadata_host.clone()),
            },
            transport: Transport::new(&self.config.resolve, &self.roots, self.config.timeout),
            config: self.config.clone(),
        })
    }
}

/// The project id from the metadata server at `metadata_host`, for trace links.
pub async fn project_id_from_metadata(metadata_host: String) -> Result<String> {
    let transport = Transport::new(&[], &TrustedRoots::built_in(), METADATA_TIMEOUT);
    MetadataServer::new(metadata_host)
        .project_id(&transport)
        .await
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
        let answer = match self.call_authorized(reference, url, accept).await? {
            Ok(answer) => answer,
            Err(error) => return Err(self.explain(registry, error)),
        };
        match answer.status() {
            StatusCode::OK => {}
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => bail!(
                "the registry `{registry}` refused access (for a private repository, give \
                 credentials for `{registry}`: see --registry-auth-file)"
            ),
            StatusCode::NOT_FOUND => bail!(MISSING),
            status => bail!("the registry `{registry}` answered {status}"),
        }
        answer.body(limit).await.map_err(|error| match error {
            BodyError::TooLarge => anyhow!(
                "the registry sent more than the {} bytes expected",
                limit.saturating_sub(1).max(1)
            ),
            BodyError::Timeout => anyhow!(
                "the registry `{registry}` did not finish sending in time (--registry-timeout)"
            ),
            BodyError::Failed(error) => {
                tracing::warn!("the download from the registry `{registry}` failed: {error}");
                anyhow!("the download from the registry `{registry}` failed")
            }
        })
    }

    /// One call, made again with the authorization a `401` asks for, when there is one.
    async fn call_authorized(
        &self,
        reference: &ComponentReference,
        url: &str,
        accept: &str,
    ) -> Result<Result<Answer, CallError>> {
        let uri: Uri = url
            .parse()
            .with_context(|| format!("invalid URL `{url}`"))?;
        let registry = Origin::of(&uri, self.is_insecure(reference.registry()))?;
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            HeaderValue::try_from(accept).context("invalid Accept header")?,
        );
        let call = |authorization| Call {
            url,
            headers: headers.clone(),
            authorization,
            registry: &registry,
        };
        let answer = self.transport.call(call(None)).await;
        let Ok(unauthorized) = &answer else {
            return Ok(answer);
        };
        if unauthorized.status() != StatusCode::UNAUTHORIZED {
            return Ok(answer);
        }
        let challenged = Challenged {
            transport: &self.transport,
            registry: &registry,
            reference,
            logins: &self.logins,
            insecure: &self.config.insecure,
        };
        Ok(match challenged.authorize(unauthorized).await? {
            Some(authorization) => self.transport.call(call(Some(&authorization))).await,
            None => answer,
        })
    }

    /// What to tell the user about a call to `registry` that got no answer. The details
    /// (a connection refused, a handshake that failed, a timeout) go to the log only:
    /// told to whoever named the registry (an admin request), they would show which
    /// ports are open on any address the host can reach.
    fn explain(&self, registry: &str, error: CallError) -> anyhow::Error {
        let hint = if self.is_insecure(registry) {
            String::new()
        } else {
            format!(" (if it serves plain HTTP, name it with --insecure-registry {registry})")
        };
        match error {
            CallError::Refused(why) => {
                tracing::warn!("refused to follow the registry `{registry}`: {why}");
                anyhow!(
                    "the registry `{registry}` sent the pull somewhere it may not go (plain \
                     HTTP, or an internal address); the log says where"
                )
            }
            CallError::Status(status) => anyhow!("the registry `{registry}` answered {status}"),
            error => {
                tracing::warn!("the call to the registry `{registry}` failed: {error}");
                anyhow!("cannot reach the registry `{registry}`; the log says why{hint}")
            }
        }
    }
}
