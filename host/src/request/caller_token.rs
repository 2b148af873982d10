//! The caller check of `--require-id-token`: where no Google front end checks callers
//! (GKE, a VM), the host lets a request reach the guest only with `Authorization:
//! Bearer` and a Google-signed OIDC ID token: RS256, signed by a key of the JWKS at the
//! configured URL (Google's by default, cached), issued by `accounts.google.com`, for
//! the configured audience, not expired and, when accounts are listed, for one of them
//! with a verified email. Anything else gets `401` before a guest instance is made.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::config::CallerCheckConfig;
use crate::http::body::ResponseBody;
use crate::http::response::plain_response;
use crate::sandbox::outbound::{Outbound, OutboundConfig, OutboundLimits, OutboundPattern};

/// The issuers of Google ID tokens (both spellings occur).
const GOOGLE_ISSUERS: [&str; 2] = ["accounts.google.com", "https://accounts.google.com"];

/// How long fetched keys are used before they are fetched again. Google rotates its
/// keys about daily and publishes a new one well before it signs with it.
const KEYS_MAX_AGE: Duration = Duration::from_secs(3600);

/// Shortest time between two fetches for a token signed by an unknown key, so that
/// forged key ids cannot make the host hammer the JWKS URL.
const UNKNOWN_KEY_REFETCH: Duration = Duration::from_secs(30);

/// Clock skew allowed on `exp` (and `nbf`, `iat`), as Google's libraries allow.
const LEEWAY_SECONDS: u64 = 60;

/// Checks callers' ID tokens against cached signing keys.
pub struct CallerCheck {
    config: CallerCheckConfig,
    validation: Validation,
    fetcher: Outbound,
    keys: Mutex<Option<FetchedKeys>>,
}

struct FetchedKeys {
    set: JwkSet,
    at: Instant,
}

/// The claims the check reads besides those `jsonwebtoken` validates.
#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: bool,
}

/// Why a request was refused.
enum Refusal {
    /// The caller's fault: `401`.
    Unauthorized(String),
    /// The keys cannot be had: `503`.
    Unavailable(anyhow::Error),
}

impl CallerCheck {
    /// A check as `config` says; keys are fetched when the first token arrives.
    pub fn new(config: CallerCheckConfig) -> Result<Self> {
        let origin = format!(
            "{}://{}",
            config.jwks_url.scheme_str().unwrap_or("https"),
            config
                .jwks_url
                .authority()
                .context("the JWKS URL has no host")?
        );
        let pattern: OutboundPattern = origin.parse()?;
        let fetcher = Outbound::new(&OutboundConfig {
            allow: vec![pattern],
            resolve: Vec::new(),
            limits: OutboundLimits {
                connect_timeout: Duration::from_secs(10),
                first_byte_timeout: Duration::from_secs(10),
                total_timeout: Duration::from_secs(30),
                max_response_body: 1 << 20,
            },
            id_tokens: Vec::new(),
            metadata_host: String::new(),
            ca_file: None,
        })?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[&config.audience]);
        validation.set_issuer(&GOOGLE_ISSUERS);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = LEEWAY_SECONDS;
        Ok(Self {
            config,
            validation,
            fetcher,
            keys: Mutex::new(None),
        })
    }

    /// `None` when `headers` carry a valid token of an allowed caller; otherwise the
    /// response to send instead of calling the guest.
    pub async fn refusal(&self, headers: &HeaderMap) -> Option<Response<ResponseBody>> {
        let refusal = self.check(headers).await.err()?;
        Some(match refusal {
            Refusal::Unauthorized(reason) => {
                tracing::warn!("refused a caller: {reason}");
                let mut response = plain_response(
                    StatusCode::UNAUTHORIZED,
                    "a valid Google ID token is needed (Authorization: Bearer)",
                );
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer error=\"invalid_token\""),
                );
                response
            }
            Refusal::Unavailable(error) => {
                tracing::error!("cannot check a caller's ID token: {error:#}");
                plain_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "cannot check ID tokens at the moment",
                )
            }
        })
    }

    async fn check(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let unauthorized = |reason: String| Refusal::Unauthorized(reason);
        let token = bearer_token(headers).ok_or_else(|| unauthorized("no bearer token".into()))?;
        let header = jsonwebtoken::decode_header(token)
            .map_err(|error| unauthorized(format!("malformed token: {error}")))?;
        let kid = header
            .kid
            .ok_or_else(|| unauthorized("the token names no signing key".into()))?;
        let key = self.key(&kid).await?;
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &self.validation)
            .map_err(|error| unauthorized(format!("invalid token: {error}")))?
            .claims;
        let allowed = &self.config.allowed_accounts;
        if allowed.is_empty() {
            return Ok(());
        }
        match claims.email {
            Some(email) if claims.email_verified && allowed.contains(&email) => Ok(()),
            Some(email) => Err(unauthorized(format!(
                "`{email}` is not an allowed service account"
            ))),
            None => Err(unauthorized("the token carries no email".into())),
        }
    }

    /// The key `kid`, from the cached keys, fetched again when they are old, or when
    /// the key is unknown and they were not fetched just now.
    async fn key(&self, kid: &str) -> Result<DecodingKey, Refusal> {
        let mut keys = self.keys.lock().await;
        let stale = |keys: &Option<FetchedKeys>, age: Duration| {
            keys.as_ref().is_none_or(|keys| keys.at.elapsed() >= age)
        };
        let known =
            |keys: &Option<FetchedKeys>| keys.as_ref().and_then(|keys| keys.set.find(kid).cloned());
        if stale(&keys, KEYS_MAX_AGE)
            || (known(&keys).is_none() && stale(&keys, UNKNOWN_KEY_REFETCH))
        {
            let set = self.fetch_keys().await.map_err(Refusal::Unavailable)?;
            *keys = Some(FetchedKeys {
                set,
                at: Instant::now(),
            });
        }
        let jwk = known(&keys)
            .ok_or_else(|| Refusal::Unauthorized(format!("unknown signing key `{kid}`")))?;
        DecodingKey::from_jwk(&jwk).map_err(|error| {
            Refusal::Unauthorized(format!("unusable signing key `{kid}`: {error}"))
        })
    }

    async fn fetch_keys(&self) -> Result<JwkSet> {
        let url = &self.config.jwks_url;
        let (status, body) = self.fetcher.get(url).await?;
        ensure!(status == StatusCode::OK, "{url} answered {status}");
        let set = serde_json::from_slice(&body)
            .with_context(|| format!("{url} did not answer a JWKS"))?;
        tracing::info!("fetched the ID token signing keys from {url}");
        Ok(set)
    }
}

/// The token of an `Authorization: Bearer TOKEN` header.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_read_from_a_bearer_header() {
        let headers = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, value.parse().unwrap());
            headers
        };
        assert_eq!(bearer_token(&headers("Bearer abc.def")), Some("abc.def"));
        assert_eq!(bearer_token(&headers("bearer  abc")), Some("abc"));
        assert_eq!(bearer_token(&headers("Basic dXNlcg==")), None);
        assert_eq!(bearer_token(&headers("Bearer ")), None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }
}
