//! The Google Cloud metadata server, as Google's client libraries use it: an access
//! token of the instance's service account, for pulls from Artifact Registry and
//! Container Registry when no credentials are given for them (a static token would
//! expire within the hour), and the project id, for trace links in the logs.
//! `$GCE_METADATA_HOST` moves it, as it does for those libraries.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use serde::Deserialize;

use super::credentials::Login;
use super::transport::{Call, Origin, Transport};

pub use crate::sandbox::outbound::{DEFAULT_METADATA_HOST, METADATA_HOST_ENV};

/// Longest a call to the metadata server may take: it answers in milliseconds where it
/// exists, and off Google Cloud nothing may wait long for it.
pub const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

/// The user name Google's registries take with an access token as the password.
const ACCESS_TOKEN_USER: &str = "oauth2accesstoken";

/// Largest answer read from the metadata server.
const MAX_ANSWER: usize = 64 << 10;

/// Whether `registry` (`HOST[:PORT]`) is Artifact Registry (`*-docker.pkg.dev`) or
/// Container Registry (`gcr.io`, `*.gcr.io`).
pub fn is_google_registry(registry: &str) -> bool {
    let host = registry
        .rsplit_once(':')
        .map_or(registry, |(host, _port)| host)
        .to_ascii_lowercase();
    host.ends_with("-docker.pkg.dev") || host == "gcr.io" || host.ends_with(".gcr.io")
}

/// The metadata server at `HOST[:PORT]`, reached over plain HTTP as it is everywhere.
#[derive(Debug, Clone)]
pub struct MetadataServer {
    host: String,
}

impl MetadataServer {
    pub fn new(host: String) -> Self {
        Self { host }
    }

    /// A login for Google's registries: the service account's access token.
    pub async fn registry_login(&self, transport: &Transport) -> Result<Login> {
        #[derive(Deserialize)]
        struct Token {
            access_token: String,
        }
        let body = self
            .get(
                transport,
                "/computeMetadata/v1/instance/service-accounts/default/token",
            )
            .await?;
        let token: Token =
            serde_json::from_slice(&body).context("the metadata server sent no access token")?;
        Ok(Login {
            username: ACCESS_TOKEN_USER.to_owned(),
            password: token.access_token,
        })
    }

    /// The project this instance runs in.
    pub async fn project_id(&self, transport: &Transport) -> Result<String> {
        let body = self
            .get(transport, "/computeMetadata/v1/project/project-id")
            .await?;
        let project = std::str::from_utf8(&body)
            .context("the metadata server sent an unreadable project id")?
            .trim();
        if project.is_empty() {
            bail!("the metadata server sent an empty project id");
        }
        Ok(project.to_owned())
    }

    async fn get(&self, transport: &Transport, path: &str) -> Result<Bytes> {
        tokio::time::timeout(METADATA_TIMEOUT, self.get_once(transport, path))
            .await
            .map_err(|_elapsed| {
                anyhow!(
                    "the metadata server at `{}` did not answer in time",
                    self.host
                )
            })?
    }

    async fn get_once(&self, transport: &Transport, path: &str) -> Result<Bytes> {
        let url = format!("http://{}{path}", self.host);
        let uri: Uri = url
            .parse()
            .with_context(|| format!("`{}` is not a metadata server address", self.host))?;
        // The operator named this address; it is trusted like an insecure registry.
        let origin = Origin::of(&uri, true)?;
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_static("metadata-flavor"),
            HeaderValue::from_static("Google"),
        );
        let failed = || format!("the metadata server at `{}` failed", self.host);
        let answer = transport
            .call(Call {
                url: &url,
                headers,
                authorization: None,
                registry: &origin,
            })
            .await
            .map_err(|error| anyhow!("{error}"))
            .with_context(failed)?;
        if answer.status() != StatusCode::OK {
            bail!("{}: it answered {}", failed(), answer.status());
        }
        answer
            .body(MAX_ANSWER)
            .await
            .map_err(|error| anyhow!("{error}"))
            .with_context(failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn googles_registries_are_known_by_name() {
        for google in [
            "us-docker.pkg.dev",
            "europe-west1-docker.pkg.dev",
            "us-central1-docker.pkg.dev:443",
            "gcr.io",
            "eu.gcr.io",
        ] {
            assert!(is_google_registry(google), "{google}");
        }
        for other in [
            "ghcr.io",
            "docker.pkg.dev",
            "pkg.dev.example",
            "evilgcr.io",
            "127.0.0.1:5000",
        ] {
            assert!(!is_google_registry(other), "{other}");
        }
    }
}
