//! The answer to a registry's `401`: a bearer token from the token service its
//! challenge names (`Bearer realm=…`), or the login itself (`Basic`).
//!
//! A login goes only where the registry it was given for sends it: to that registry
//! when its own `401` asks for `Basic`, and to the token service its own `Bearer`
//! challenge names (on another host, as Docker Hub's `auth.docker.io`). Never to a host
//! whose `401` came after a redirect, never on a `401` without a challenge, and never
//! over plain HTTP to a host not named by `--insecure-registry`: a token service the
//! login may not reach is asked for an anonymous token instead.

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use http::{HeaderMap, HeaderValue, Uri, header};
use serde::Deserialize;

use super::credentials::Login;
use super::logins::Logins;
use super::reference::ComponentReference;
use super::transport::{Answer, BodyError, Call, Origin, Transport};

/// Largest answer read from a token endpoint.
const MAX_TOKEN_BODY: usize = 64 << 10;

/// What a `401` is answered with.
pub struct Challenged<'a> {
    pub transport: &'a Transport,
    /// The registry the call was for.
    pub registry: &'a Origin,
    pub reference: &'a ComponentReference,
    pub logins: &'a Logins,
    /// The registries (`HOST[:PORT]`) spoken to over plain HTTP.
    pub insecure: &'a [String],
}

impl Challenged<'_> {
    /// The `Authorization` header `unauthorized` asks for, with the registry's login if
    /// the challenge needs one; `None` when there is nothing to answer with.
    pub async fn authorize(&self, unauthorized: &Answer) -> Result<Option<HeaderValue>> {
        let login = || {
            self.logins
                .for_registry(self.transport, self.registry.authority())
        };
        if !self.registry.holds(&unauthorized.url) {
            tracing::warn!(
                "`{}` asked for authorization after the registry `{}` redirected there; no \
                 credentials are sent to it",
                unauthorized.url.authority().map_or("", |a| a.as_str()),
                self.registry.authority()
            );
            return Ok(None);
        }
        let challenge = unauthorized
            .response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        if let Some(parameters) = strip_prefix_ignore_case(challenge, "Bearer ") {
            let url = token_url(&challenge_parameters(parameters), self.reference)?;
            let realm: Uri = url
                .parse()
                .with_context(|| format!("the registry named an invalid token service `{url}`"))?;
            let login = match self.may_receive_login(&realm) {
                true => login().await,
                false => None,
            };
            return self.bearer_token(&url, login.as_ref()).await;
        }
        if strip_prefix_ignore_case(challenge, "Basic").is_some() {
            return login().await.as_ref().map(basic).transpose();
        }
        Ok(None)
    }

    /// Whether a login may go to the token service at `realm`: over TLS, or to a host
    /// named by `--insecure-registry`.
    fn may_receive_login(&self, realm: &Uri) -> bool {
        let authority = realm.authority().map_or("", |a| a.as_str());
        let allowed = realm.scheme_str() == Some("https")
            || self.insecure.iter().any(|insecure| insecure == authority);
        if !allowed {
            tracing::warn!(
                "the registry `{}` named the token service `{authority}` over plain HTTP; \
                 asking it for an anonymous token, without credentials",
                self.registry.authority()
            );
        }
        allowed
    }

    /// A token from the token service at `url`, asked with `login` if any; `None` when
    /// the service refuses (the call it was for is then answered `401` again, and
    /// reported so).
    async fn bearer_token(&self, url: &str, login: Option<&Login>) -> Result<Option<HeaderValue>> {
        let authorization = login.map(basic).transpose()?;
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let answer = self
            .transport
            .call(Call {
                url,
                headers,
                authorization: authorization.as_ref(),
                registry: self.registry,
            })
            .await
            .map_err(|error| {
                tracing::warn!("the token service `{url}` failed: {error}");
                anyhow!("the registry's token service failed")
            })?;
        if !answer.status().is_success() {
            return Ok(None);
        }
        let body = answer
            .body(MAX_TOKEN_BODY)
            .await
            .map_err(|error| match error {
                BodyError::Timeout => anyhow!(
                    "the registry's token service did not finish sending in time \
                 (--registry-timeout)"
                ),
                error => anyhow!("the registry's token service failed: {error}"),
            })?;
        #[derive(Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let token: Token =
            serde_json::from_slice(&body).context("the registry's token service sent no token")?;
        let Some(token) = token.token.or(token.access_token) else {
            bail!("the registry's token service sent no token");
        };
        let value = HeaderValue::try_from(format!("Bearer {token}"))
            .context("the registry's token is not a valid header")?;
        Ok(Some(value))
    }
}

/// `Basic` with `login`, marked sensitive so it never shows in debug output.
fn basic(login: &Login) -> Result<HeaderValue> {
    let encoded = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", login.username, login.password));
    let mut value = HeaderValue::try_from(format!("Basic {encoded}"))
        .context("the credentials are not a valid header")?;
    value.set_sensitive(true);
    Ok(value)
}

/// Where a bearer challenge says to get a token for pulling `reference`.
fn token_url(parameters: &[(String, String)], reference: &ComponentReference) -> Result<String> {
    let parameter = |name: &str| {
        parameters
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    };
    let realm = parameter("realm")
        .context("the registry asked for a token without naming where to get it")?;
    let scope = format!("repository:{}:pull", reference.repository());
    let mut query = form_urlencoded::Serializer::new(String::new());
    if let Some(service) = parameter("service") {
        query.append_pair("service", service);
    }
    query.append_pair("scope", parameter("scope").unwrap_or(&scope));
    let separator = if realm.contains('?') { '&' } else { '?' };
    Ok(format!("{realm}{separator}{}", query.finish()))
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
