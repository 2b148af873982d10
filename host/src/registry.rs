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

use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use futures_util::TryStreamExt;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE, OciDescriptor, OciManifest,
};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::{Digest, Sha256};

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
const ACCEPTED_MANIFESTS: &[&str] = &[
    OCI_IMAGE_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
];

/// What a pull says when bytes do not match their digest.
const DIGEST_MISMATCH: &str = "the registry sent content that does not match its digest";

/// Longest a connection to the registry may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest the registry may leave a response without sending anything.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// `oci://REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST]`, with the registry named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentReference(Reference);

impl ComponentReference {
    /// The registry, as `HOST[:PORT]`.
    pub fn registry(&self) -> &str {
        self.0.registry()
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
        let reference = Reference::try_from(name)
            .with_context(|| format!("`{source}` is not a valid reference; {usage}"))?;
        // Without a registry the parser falls back to Docker Hub, which is never what a
        // reference to a component means to say.
        ensure!(
            name.starts_with(&format!("{}/", reference.registry())),
            "`{source}` does not name its registry; {usage}"
        );
        Ok(Self(reference))
    }
}

impl fmt::Display for ComponentReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}", self.0)
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
    client: Client,
    auth: RegistryAuth,
    insecure: Vec<String>,
    max_size: u64,
}

/// A [`Registry`] made the first time one is needed, so that a host serving a file
/// never pays for setting one up (its trust store is parsed at creation).
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
    pub fn get(&self) -> Result<&Registry> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let client = Registry::new(&self.config)?;
        Ok(self.client.get_or_init(|| client))
    }
}

/// A component's manifest, read and checked: what [`Registry::fetch`] downloads.
pub struct Resolved {
    /// The reference, pinned to the manifest's digest.
    reference: ComponentReference,
    layer: OciDescriptor,
    /// The layer's SHA-256 in lowercase hex: the component's own SHA-256.
    sha256: String,
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

impl Registry {
    /// A client for registries as `config` says to reach them.
    pub fn new(config: &RegistryConfig) -> Result<Self> {
        // The HTTP client brings rustls without a crypto provider of its own: it takes
        // the process's default, which must be the same ring the rest of the host uses.
        // It fails only when a default is installed already, which is then used.
        let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
        // The same trust store wherever the host runs (a `FROM scratch` image has none),
        // and the one guests' outbound requests use.
        let roots = webpki_root_certs::TLS_SERVER_ROOT_CERTS
            .iter()
            .map(|certificate| Certificate {
                encoding: CertificateEncoding::Der,
                data: certificate.to_vec(),
            })
            .collect();
        let client = Client::try_from(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(config.insecure.clone()),
            tls_certs_only: roots,
            // A manifest list is refused, not resolved to a platform: a component has none.
            platform_resolver: None,
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            user_agent: concat!("wasi-host/", env!("CARGO_PKG_VERSION")),
            ..ClientConfig::default()
        })
        .context("cannot set up the registry client")?;
        let auth = match &config.credentials {
            Some((username, password)) => RegistryAuth::Basic(username.clone(), password.clone()),
            None => RegistryAuth::Anonymous,
        };
        Ok(Self {
            client,
            auth,
            insecure: config.insecure.clone(),
            max_size: config.max_size,
        })
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
        // oci-client checks the manifest's bytes against the reference's digest, if it
        // has one, before returning them.
        let (manifest, digest) = self
            .client
            .pull_manifest_raw(&reference.0, &self.auth, ACCEPTED_MANIFESTS)
            .await
            .map_err(|error| self.explain(reference, error))?;
        let manifest: OciManifest = serde_json::from_slice(&manifest)
            .context("the registry sent an unreadable manifest")?;
        let expected = format!(
            "expected a Wasm component: config `{WASM_CONFIG_MEDIA_TYPE}` and one \
             `{WASM_LAYER_MEDIA_TYPE}` layer, as `wkg oci push` writes"
        );
        let image = match manifest {
            OciManifest::Image(image) => image,
            OciManifest::ImageIndex(_) => {
                bail!("it is a multi-platform image index, not a Wasm component; {expected}")
            }
        };
        let layers: Vec<&str> = image.layers.iter().map(|l| l.media_type.as_str()).collect();
        if image.config.media_type != WASM_CONFIG_MEDIA_TYPE || layers != [WASM_LAYER_MEDIA_TYPE] {
            bail!(
                "it is not a Wasm component: its config is `{}` and its layers are [{}]; {expected}",
                image.config.media_type,
                layers.join(", ")
            );
        }
        let layer = image
            .layers
            .into_iter()
            .next()
            .expect("one layer, checked above");
        let sha256 = match layer.digest.split_once(':') {
            Some(("sha256", hex)) if is_sha256_hex(hex) => hex.to_owned(),
            _ => bail!("its layer's digest `{}` is not a SHA-256", layer.digest),
        };
        ensure!(
            u64::try_from(layer.size).is_ok_and(|size| size <= self.max_size),
            "the component is {} bytes, more than the limit of {} (--max-pull-size)",
            layer.size,
            self.max_size
        );
        // Pinned to the digest, with the tag kept for people reading the origin.
        let pinned = match reference.0.tag() {
            Some(tag) => Reference::with_tag_and_digest(
                reference.0.registry().to_owned(),
                reference.0.repository().to_owned(),
                tag.to_owned(),
                digest,
            ),
            None => reference.0.clone_with_digest(digest),
        };
        Ok(Resolved {
            reference: ComponentReference(pinned),
            layer,
            sha256,
        })
    }

    /// Downloads the component `resolved` found, and checks its bytes against the
    /// layer's size and digest: only bytes that match are returned.
    pub async fn fetch(&self, resolved: &Resolved) -> Result<ComponentBytes> {
        let bytes = self
            .fetch_inner(resolved)
            .await
            .with_context(|| format!("cannot pull `{resolved}`"))?;
        ComponentBytes::uploaded(bytes, resolved.to_string()).map_err(anyhow::Error::from)
    }

    async fn fetch_inner(&self, resolved: &Resolved) -> Result<Vec<u8>> {
        let reference = &resolved.reference;
        let mut stream = self
            .client
            .pull_blob_stream(&reference.0, &resolved.layer)
            .await
            .map_err(|error| self.explain(reference, error))?;
        let expected = u64::try_from(resolved.layer.size).unwrap_or(0);
        let mut bytes = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
        let mut hasher = Sha256::new();
        while let Some(chunk) = stream.try_next().await.map_err(download_error)? {
            ensure!(
                bytes.len() as u64 + chunk.len() as u64 <= expected,
                "the registry sent more than the {expected} bytes the manifest declares"
            );
            hasher.update(&chunk);
            bytes.extend_from_slice(&chunk);
        }
        ensure!(
            bytes.len() as u64 == expected,
            "the registry sent {} bytes, not the {expected} the manifest declares",
            bytes.len()
        );
        // oci-client checks the digest too; checked here again so that the guarantee
        // does not rest on a library detail.
        let actual = format!("{:x}", hasher.finalize());
        ensure!(
            actual == resolved.sha256,
            "the component's bytes do not match its digest: expected sha256:{}, got sha256:{actual}",
            resolved.sha256
        );
        Ok(bytes)
    }

    /// Turns a registry client error into one that says what to do about it.
    fn explain(
        &self,
        reference: &ComponentReference,
        error: OciDistributionError,
    ) -> anyhow::Error {
        use OciDistributionError::{
            AuthenticationFailure, DigestError, ImageManifestNotFoundError, RegistryError,
            RequestError, ServerError, UnauthorizedError,
        };
        use oci_client::errors::OciErrorCode as Code;
        let registry = reference.registry();
        let has_code = |codes: &[Code]| {
            matches!(&error, RegistryError { envelope, .. }
                if envelope.errors.iter().any(|e| codes.contains(&e.code)))
        };
        let denied = || {
            format!(
                "the registry `{registry}` refused access (set ${USERNAME_ENV} and \
                 ${PASSWORD_ENV} for a private repository)"
            )
        };
        let missing = "no such repository, tag or digest in the registry";
        let hint = match &error {
            RequestError(request)
                if is_tls_failure(request)
                    && !self.insecure.iter().any(|insecure| insecure == registry) =>
            {
                format!(
                    "the registry `{registry}` failed the TLS handshake (if it serves plain \
                     HTTP, name it with --insecure-registry {registry})"
                )
            }
            RequestError(request) if request.is_connect() => {
                format!("cannot reach the registry `{registry}`")
            }
            RequestError(request) if request.is_timeout() => {
                format!("the registry `{registry}` did not answer in time")
            }
            AuthenticationFailure(_)
            | UnauthorizedError { .. }
            | ServerError {
                code: 401 | 403, ..
            } => denied(),
            _ if has_code(&[Code::Denied, Code::Unauthorized]) => denied(),
            ImageManifestNotFoundError(_) | ServerError { code: 404, .. } => missing.to_owned(),
            _ if has_code(&[Code::ManifestUnknown, Code::NameUnknown, Code::BlobUnknown]) => {
                missing.to_owned()
            }
            DigestError(_) => DIGEST_MISMATCH.to_owned(),
            _ => return anyhow::Error::new(error),
        };
        anyhow::Error::new(error).context(hint)
    }
}

/// The error of a failed download. oci-client checks the digest as the stream ends, and
/// reports a mismatch as an I/O error.
fn download_error(error: std::io::Error) -> anyhow::Error {
    let mismatch = error
        .get_ref()
        .is_some_and(|inner| inner.is::<oci_client::errors::DigestError>());
    let error = anyhow::Error::new(error);
    if mismatch {
        error.context(DIGEST_MISMATCH)
    } else {
        error.context("the download of the component failed")
    }
}

/// Whether `error` was caused by a TLS failure (for example a plain HTTP answer to a
/// TLS handshake).
fn is_tls_failure(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if error.is::<tokio_rustls::rustls::Error>() {
            return true;
        }
        // An `io::Error`'s `source` skips the error it wraps.
        cause = match error.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|inner| inner as &(dyn std::error::Error + 'static)),
            None => error.source(),
        };
    }
    false
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
        let digest = format!("sha256:{}", "a".repeat(64));
        let pinned: ComponentReference = format!("oci://ghcr.io/org/hello:v1@{digest}")
            .parse()
            .unwrap();
        assert_eq!(
            pinned.to_string(),
            format!("oci://ghcr.io/org/hello:v1@{digest}")
        );

        for wrong in [
            "oci://hello:v1",
            "oci://library/hello",
            "oci://ghcr.io/Hello",
            "oci://ghcr.io/hello@sha256:abc",
        ] {
            assert!(wrong.parse::<ComponentReference>().is_err(), "{wrong}");
        }
    }
}
