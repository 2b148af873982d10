//! The token dance of a registry's `401`: a bearer token from the token service its
//! challenge names (`Bearer realm=…`), or the credentials themselves (`Basic`).

use anyhow::{Context, Result, anyhow};
use base64::Engine as _;
use http::{HeaderMap, HeaderValue, header};
use http_body_util::{BodyExt, Limited};
use serde::Deserialize;

use super::reference::ComponentReference;
use super::transport::Transport;

/// Largest answer read from a token endpoint.
const MAX_TOKEN_BODY: usize = 64 << 10;

/// The `Authorization` header a registry's `401` asks for: a bearer token from its
/// token service (`Bearer realm=…`), or the credentials themselves (`Basic`).
pub async fn authorize(
    transport: &Transport,
    credentials: Option<&(String, String)>,
    reference: &ComponentReference,
    challenged: &HeaderMap,
) -> Result<Option<HeaderValue>> {
    let challenge = challenged
        .get(header::WWW_AUTHENTICATE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let basic = credentials
        .map(|(user, password)| {
            let encoded =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            HeaderValue::try_from(format!("Basic {encoded}"))
        })
        .transpose()
        .context("the credentials are not a valid header")?;
    match strip_prefix_ignore_case(challenge, "Bearer ") {
        Some(parameters) => {
            let url = token_url(&challenge_parameters(parameters), reference)?;
            bearer_token(transport, &url, basic.as_ref()).await
        }
        None => Ok(basic),
    }
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

/// A token from the token service at `url`, asked with `basic` credentials if any;
/// `None` when the service refuses (the call it was for is then answered `401` again,
/// and reported so).
async fn bearer_token(
    transport: &Transport,
    url: &str,
    basic: Option<&HeaderValue>,
) -> Result<Option<HeaderValue>> {
    let response = transport
        .call(url, "application/json", basic)
        .await
        .map_err(|error| anyhow!("the registry's token service failed: {error:?}"))?;
    if !response.status().is_success() {
        return Ok(None);
    }
    let body = Limited::new(response.into_body(), MAX_TOKEN_BODY)
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
