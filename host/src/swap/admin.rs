//! The admin endpoint (`--admin-addr`, off by default): `GET /component` shows the
//! active version, `PUT /component` with a `.wasm` body swaps it in, and with
//! `Content-Type: application/json` and `{"reference": "oci://..."}` pulls that
//! reference, which later reloads pull again. It listens on its own address, so it is
//! never exposed with the service, and every request needs the operator's bearer token.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::active::{ActiveComponent, FollowerVersion, SwapError, Version};
use crate::http::body::ResponseBody;
use crate::http::response::{declared_length, json_response, plain_response, with_allow};
use crate::load::registry::ComponentReference;

/// The one resource the endpoint manages.
pub const COMPONENT_PATH: &str = "/component";

/// Serves the admin endpoint's requests.
pub struct Admin {
    active: Arc<ActiveComponent>,
    token_sha256: [u8; 32],
    max_upload: u64,
}

/// The active version, as `GET /component` shows it.
#[derive(Serialize)]
struct VersionView<'a> {
    generation: u64,
    /// Absent for a moment after startup, while the first version is being hashed.
    sha256: Option<&'a str>,
    origin: &'a str,
    activated_at: String,
    components: Vec<ComponentView<'a>>,
    /// With `--workers`, what each of the other workers serves, as it says.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    workers: Vec<FollowerVersion>,
}

/// One component of the active version.
#[derive(Serialize)]
struct ComponentView<'a> {
    id: &'a str,
    /// The WASI HTTP world it was built for (`wasi:http/proxy@0.2`, `wasi:http/service@0.3`).
    world: &'static str,
}

/// The body of a `PUT /component` that names a registry reference.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReferenceRequest {
    reference: String,
}

impl Admin {
    /// An endpoint over `active` that accepts `token` and uploads of up to `max_upload`
    /// bytes.
    pub fn new(active: Arc<ActiveComponent>, token: &str, max_upload: u64) -> Self {
        Self {
            active,
            token_sha256: Sha256::digest(token.as_bytes()).into(),
            max_upload,
        }
    }

    /// Answers one request from `peer`.
    pub async fn handle(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Response<ResponseBody> {
        if !self.authorized(&request) {
            tracing::warn!(%peer, "admin request without a valid token refused");
            let mut response =
                plain_response(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
        if request.uri().path() != COMPONENT_PATH {
            return plain_response(StatusCode::NOT_FOUND, "no such admin resource");
        }
        match *request.method() {
            Method::GET => {
                let version = self.active.current();
                let workers = self.active.follower_versions().await;
                version_response(StatusCode::OK, &version, workers)
            }
            Method::PUT => self.put(request, peer).await,
            _ => with_allow(
                plain_response(StatusCode::METHOD_NOT_ALLOWED, "use GET or PUT"),
                "GET, PUT",
            ),
        }
    }

    fn authorized<B>(&self, request: &Request<B>) -> bool {
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "));
        // Comparing digests rather than the tokens themselves: how long a comparison
        // takes then says nothing about the token.
        presented.is_some_and(|token| Sha256::digest(token.as_bytes())[..] == self.token_sha256)
    }

    async fn put(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<ResponseBody> {
        let too_large = || {
            plain_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!(
                    "the component is larger than the upload limit ({} bytes)",
                    self.max_upload
                ),
            )
        };
        let (head, body) = request.into_parts();
        if declared_length(&head.headers).is_some_and(|length| length > self.max_upload) {
            return too_large();
        }
        let limit = usize::try_from(self.max_upload).unwrap_or(usize::MAX);
        let bytes = match Limited::new(body, limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(error) if error.is::<LengthLimitError>() => return too_large(),
            Err(error) => {
                tracing::warn!(%peer, "admin upload failed: {error}");
                return plain_response(StatusCode::BAD_REQUEST, "the upload did not complete");
            }
        };
        let outcome = if is_json(&head.headers) {
            let reference = serde_json::from_slice::<ReferenceRequest>(&bytes)
                .map_err(anyhow::Error::from)
                .and_then(|body| body.reference.parse::<ComponentReference>());
            match reference {
                Ok(reference) => self.active.pull_reference(reference).await,
                Err(error) => {
                    return plain_response(
                        StatusCode::BAD_REQUEST,
                        &format!(
                            "expected {{\"reference\": \"oci://REGISTRY/REPOSITORY:TAG\"}}: {error:#}"
                        ),
                    );
                }
            }
        } else {
            let origin = format!("upload from {peer}");
            self.active.upload(Vec::from(bytes), origin).await
        };
        match outcome {
            Ok(version) => version_response(StatusCode::OK, &version, Vec::new()),
            Err(SwapError::Unchanged) => {
                version_response(StatusCode::OK, &self.active.current(), Vec::new())
            }
            Err(SwapError::Superseded) => plain_response(
                StatusCode::CONFLICT,
                "another version was published while this one was pulled; the newer one \
                 keeps serving (send it again to swap to it)",
            ),
            Err(SwapError::Rejected(error)) => plain_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("rejected, the old version keeps serving: {error:#}"),
            ),
        }
    }
}

/// Whether the body is JSON (a reference) rather than a component's bytes.
fn is_json(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

fn version_response(
    status: StatusCode,
    version: &Version,
    workers: Vec<FollowerVersion>,
) -> Response<ResponseBody> {
    let view = VersionView {
        generation: version.generation,
        sha256: version.sha256.get().map(String::as_str),
        origin: &version.origin,
        activated_at: humantime::format_rfc3339_millis(version.activated_at).to_string(),
        components: version
            .app
            .components()
            .iter()
            .map(|component| ComponentView {
                id: &component.id,
                world: component.world.name(),
            })
            .collect(),
        workers,
    };
    json_response(status, &view)
}
