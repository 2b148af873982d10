//! Google ID tokens for the origins the operator names (`--outbound-id-token`): a guest
//! calling a private Cloud Run service needs one, but must never reach the metadata
//! server itself. The host fetches a token for the origin's audience from the metadata
//! server, keeps it until shortly before it expires, and adds `Authorization: Bearer`
//! to the guest's requests to exactly that origin, unless the guest set its own. No
//! other origin ever sees a token.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::allowlist::Origin;

/// Where the metadata server is, unless `GCE_METADATA_HOST` says otherwise: its address,
/// which needs no DNS.
pub const DEFAULT_METADATA_HOST: &str = "169.254.169.254";

/// The variable that moves the metadata server (as Google's client libraries read it).
pub const METADATA_HOST_ENV: &str = "GCE_METADATA_HOST";

/// How long before its expiry a token is replaced: a request that takes it must still
/// find it valid when it arrives.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// Longest a token fetch may take; the metadata server is on the same machine.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest token accepted from the metadata server.
const MAX_TOKEN_SIZE: usize = 64 * 1024;

/// An origin that gets ID tokens, and the audience they are minted for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdTokenAudience {
    origin: Origin,
    /// The origin as the operator wrote it, without a trailing `/`: Cloud Run's
    /// audience is the service URL.
    audience: String,
}

impl FromStr for IdTokenAudience {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        let audience = text.strip_suffix('/').unwrap_or(text);
        let explain = "expected an origin such as `https://svc-x.a.run.app`";
        let uri: Uri = audience
            .parse()
            .with_context(|| format!("invalid ID token audience `{text}`: {explain}"))?;
        let Some(origin) = Origin::from_uri(&uri) else {
            bail!("invalid ID token audience `{text}`: {explain}");
        };
        ensure!(
            uri.path() == "/" && uri.query().is_none(),
            "invalid ID token audience `{text}`: an origin has no path or query ({explain})"
        );
        Ok(Self {
            origin,
            audience: audience.to_owned(),
        })
    }
}

impl fmt::Display for IdTokenAudience {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.audience)
    }
}

/// The ID tokens of the named origins, fetched when first needed and cached.
pub struct IdTokens {
    /// The metadata server's identity endpoint, without the query.
    endpoint: String,
    client: Client<HttpConnector, Empty<Bytes>>,
    audiences: HashMap<String, Arc<Cached>>,
}

/// One audience's token. The lock is held while a token is fetched, so that requests
/// arriving meanwhile wait for that fetch instead of starting their own.
struct Cached {
    audience: String,
    token: Mutex<Option<(HeaderValue, Instant)>>,
}

impl IdTokens {
    /// Tokens for `audiences` from the metadata server at `metadata_host`.
    pub fn new(audiences: &[IdTokenAudience], metadata_host: &str) -> Self {
        let audiences = audiences
            .iter()
            .map(|named| {
                let cached = Cached {
                    audience: named.audience.clone(),
                    token: Mutex::new(None),
                };
                (named.origin.to_string(), Arc::new(cached))
            })
            .collect();
        Self {
            endpoint: format!(
                "http://{metadata_host}/computeMetadata/v1/instance/service-accounts/default/identity"
            ),
            client: Client::builder(TokioExecutor::new()).build_http(),
            audiences,
        }
    }

    /// The `Authorization` value for a request to `origin`, or `None` when the origin
    /// gets no token.
    pub async fn authorization(&self, origin: &Origin) -> Option<Result<HeaderValue>> {
        let cached = self.audiences.get(&origin.to_string())?;
        let mut token = cached.token.lock().await;
        if let Some((value, refresh_at)) = &*token
            && Instant::now() < *refresh_at
        {
            return Some(Ok(value.clone()));
        }
        let fetched = self.fetch(&cached.audience).await.with_context(|| {
            format!(
                "cannot get an ID token for `{}` from the metadata server",
                cached.audience
            )
        });
        Some(fetched.map(|(value, refresh_at)| {
            *token = Some((value.clone(), refresh_at));
            value
        }))
    }

    /// A new token for `audience`, as a `Bearer` value, and when to replace it.
    async fn fetch(&self, audience: &str) -> Result<(HeaderValue, Instant)> {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("audience", audience)
            .append_pair("format", "full")
            .finish();
        let request = Request::get(format!("{}?{query}", self.endpoint))
            .header("metadata-flavor", "Google")
            .body(Empty::new())?;
        let exchange = async {
            let response = self.client.request(request).await?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_TOKEN_SIZE)
                .collect()
                .await
                .map_err(|error| anyhow::anyhow!("{error}"))?
                .to_bytes();
            anyhow::Ok((status, body))
        };
        let (status, body) = tokio::time::timeout(FETCH_TIMEOUT, exchange)
            .await
            .with_context(|| format!("no answer within {FETCH_TIMEOUT:?}"))??;
        ensure!(
            status == StatusCode::OK,
            "the metadata server answered {status}: {}",
            String::from_utf8_lossy(&body).trim()
        );
        let token = std::str::from_utf8(&body)
            .context("the token is not text")?
            .trim();
        let lifetime = remaining_lifetime(token, SystemTime::now())?;
        let value = HeaderValue::try_from(format!("Bearer {token}"))
            .context("the token does not fit in a header")?;
        Ok((
            value,
            Instant::now() + lifetime.saturating_sub(REFRESH_MARGIN),
        ))
    }
}

/// How long the JWT `token` stays valid after `now`, from its `exp` claim. The token
/// is not verified: it comes from the metadata server, and its audience checks it.
fn remaining_lifetime(token: &str, now: SystemTime) -> Result<Duration> {
    #[derive(serde::Deserialize)]
    struct Expiry {
        exp: u64,
    }
    let payload = token.split('.').nth(1).context("the token is not a JWT")?;
    let json = URL_SAFE_NO_PAD
        .decode(payload)
        .context("the token's payload is not base64url")?;
    let Expiry { exp } =
        serde_json::from_slice(&json).context("the token's payload has no `exp`")?;
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    Ok(Duration::from_secs(exp).saturating_sub(since_epoch))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_audience_is_an_origin() {
        let named: IdTokenAudience = "https://svc-x.a.run.app/".parse().unwrap();
        assert_eq!(named.to_string(), "https://svc-x.a.run.app");
        assert_eq!(named.origin.to_string(), "https://svc-x.a.run.app:443");
        let local: IdTokenAudience = "http://127.0.0.1:8081".parse().unwrap();
        assert_eq!(local.origin.to_string(), "http://127.0.0.1:8081");
        for bad in [
            "svc-x.a.run.app",
            "ftp://svc",
            "https://svc/path",
            "https://svc?x=1",
        ] {
            let error = bad.parse::<IdTokenAudience>().unwrap_err().to_string();
            assert!(error.contains(&format!("`{bad}`")), "{error}");
        }
    }

    #[test]
    fn the_lifetime_comes_from_the_exp_claim() {
        let payload = URL_SAFE_NO_PAD.encode(r#"{"aud":"x","exp":1000}"#);
        let token = format!("e30.{payload}.c2ln");
        let now = UNIX_EPOCH + Duration::from_secs(400);
        assert_eq!(
            remaining_lifetime(&token, now).unwrap(),
            Duration::from_secs(600)
        );
        let later = UNIX_EPOCH + Duration::from_secs(2000);
        assert_eq!(remaining_lifetime(&token, later).unwrap(), Duration::ZERO);
        assert!(remaining_lifetime("not-a-jwt", now).is_err());
        let no_exp = format!("e30.{}.c2ln", URL_SAFE_NO_PAD.encode("{}"));
        assert!(remaining_lifetime(&no_exp, now).is_err());
    }
}
