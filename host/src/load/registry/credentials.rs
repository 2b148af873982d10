//! Registry credentials, each for the one registry it was given for: from a Docker
//! `config.json`-style file (`--registry-auth-file`), and from the environment
//! (`$WASI_HOST_REGISTRY_HOST` with its user name and password). A registry with no
//! entry is spoken to anonymously, whatever other registries' credentials are.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use anyhow::{Context, Result, bail, ensure};
use base64::Engine as _;
use serde::Deserialize;

/// A user name and a password (or access token) for one registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    pub username: String,
    pub password: String,
}

// The password stays out of debug output.
impl fmt::Debug for Login {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Login")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Logins by registry, `HOST[:PORT]` exactly as references name it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    by_registry: BTreeMap<String, Login>,
}

impl Credentials {
    /// The login for `registry` (`HOST[:PORT]`), if one was given for it.
    pub fn for_registry(&self, registry: &str) -> Option<&Login> {
        self.by_registry.get(&registry.to_ascii_lowercase())
    }

    /// Adds `login` for `registry`, replacing one given before.
    pub fn insert(&mut self, registry: &str, login: Login) -> Result<()> {
        let key = registry_key(registry)?;
        self.by_registry.insert(key, login);
        Ok(())
    }

    /// Adds every login of `other`, each replacing one given for the same registry.
    pub fn merge(&mut self, other: &Credentials) {
        self.by_registry.extend(other.by_registry.clone());
    }

    /// Reads the Docker `config.json`-style file at `path`.
    pub fn read_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the registry auth file `{}`", path.display()))?;
        Self::parse_docker_config(&text)
            .with_context(|| format!("the registry auth file `{}`", path.display()))
    }

    /// The `auths` of a Docker `config.json`: each key a registry (`HOST[:PORT]`, or a
    /// URL such as `https://HOST/v1/`, which stands for its HOST), each value an `auth`
    /// (base64 of `USER:PASSWORD`) or a `username` and a `password`.
    pub fn parse_docker_config(text: &str) -> Result<Self> {
        #[derive(Deserialize)]
        struct DockerConfig {
            #[serde(default)]
            auths: BTreeMap<String, Entry>,
        }
        #[derive(Deserialize)]
        struct Entry {
            auth: Option<String>,
            username: Option<String>,
            password: Option<String>,
        }
        let config: DockerConfig =
            serde_json::from_str(text).context("it is not a Docker config.json")?;
        let mut credentials = Self::default();
        for (key, entry) in config.auths {
            let login = match (entry.auth, entry.username, entry.password) {
                (Some(auth), _, _) => decode_auth(&auth).with_context(|| {
                    format!("`auths.{key}.auth` is not base64 of USER:PASSWORD")
                })?,
                (None, Some(username), Some(password)) => Login { username, password },
                _ => bail!("`auths.{key}` has neither `auth` nor `username` and `password`"),
            };
            credentials.insert(&key, login)?;
        }
        Ok(credentials)
    }
}

/// `HOST[:PORT]`, lower case, from a registry name or a URL naming it.
fn registry_key(text: &str) -> Result<String> {
    let without_scheme = text.split_once("://").map_or(text, |(_, rest)| rest);
    let host = without_scheme.split('/').next().unwrap_or_default();
    ensure!(
        !host.is_empty() && !host.contains(['@', ' ', '?', '#']),
        "`{text}` does not name a registry (expected HOST[:PORT])"
    );
    Ok(host.to_ascii_lowercase())
}

fn decode_auth(auth: &str) -> Result<Login> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(auth.trim())?;
    let text = String::from_utf8(bytes)?;
    let (username, password) = text.split_once(':').context("no `:`")?;
    Ok(Login {
        username: username.to_owned(),
        password: password.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_docker_config_gives_one_login_per_registry() {
        let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
        let credentials = Credentials::parse_docker_config(&format!(
            r#"{{"auths": {{
                "ghcr.io": {{"auth": "{auth}"}},
                "https://Registry.Example:5000/v1/": {{"username": "bob", "password": "pw"}}
            }}, "credsStore": "desktop"}}"#
        ))
        .unwrap();
        let login = credentials.for_registry("ghcr.io").unwrap();
        assert_eq!(
            (login.username.as_str(), login.password.as_str()),
            ("alice", "s3cret")
        );
        let login = credentials.for_registry("registry.example:5000").unwrap();
        assert_eq!(login.username, "bob");
        assert_eq!(credentials.for_registry("registry.example"), None);
        assert_eq!(credentials.for_registry("docker.io"), None);
        assert!(!format!("{credentials:?}").contains("s3cret"));

        for (wrong, why) in [
            ("{", "not a Docker config.json"),
            (r#"{"auths": {"ghcr.io": {"auth": "!!"}}}"#, "not base64"),
            (
                r#"{"auths": {"ghcr.io": {"username": "a"}}}"#,
                "has neither",
            ),
            (
                r#"{"auths": {"": {"username": "a", "password": "b"}}}"#,
                "does not name",
            ),
        ] {
            let error = Credentials::parse_docker_config(wrong).unwrap_err();
            assert!(format!("{error:#}").contains(why), "{wrong}: {error:#}");
        }
    }
}
