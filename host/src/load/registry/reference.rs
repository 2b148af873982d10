//! What names a component in a registry: `oci://REGISTRY/REPOSITORY[:TAG][@DIGEST]`,
//! parsed and checked without any I/O.

use std::fmt;
use std::str::FromStr;

use anyhow::{Context, Result, anyhow};

/// How a component reference starts.
pub const SCHEME: &str = "oci://";

/// `oci://REGISTRY/REPOSITORY[:TAG][@sha256:DIGEST]`, with the registry named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentReference {
    registry: String,
    repository: String,
    tag: Option<String>,
    /// `sha256:HEX`, when the reference pins the manifest.
    digest: Option<String>,
}

impl ComponentReference {
    /// The registry, as `HOST[:PORT]`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The repository, as `PATH/NAME`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The manifest digest (`sha256:HEX`) the reference pins, if any.
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The tag or the digest to ask the registry for: the digest when pinned.
    pub fn manifest_reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// This reference pinned to `digest`, its tag kept for people reading it.
    pub fn pinned(&self, digest: String) -> Self {
        Self {
            digest: Some(digest),
            ..self.clone()
        }
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
        let invalid = |what: &str| anyhow!("`{source}` {what}; {usage}");
        let (registry, rest) = name
            .split_once('/')
            .ok_or_else(|| invalid("does not name its registry"))?;
        // As Docker reads names: a first part without `.` or `:` is a path, not a host,
        // and a reference to a component always names its registry.
        if !(registry.contains(['.', ':']) || registry == "localhost") {
            return Err(invalid("does not name its registry"));
        }
        let (rest, digest) = match rest.split_once('@') {
            Some((rest, digest)) => {
                let hex = digest
                    .strip_prefix("sha256:")
                    .filter(|hex| is_sha256_hex(hex))
                    .ok_or_else(|| invalid("has a digest that is not sha256:64 hex digits"))?;
                (rest, Some(format!("sha256:{hex}")))
            }
            None => (rest, None),
        };
        let (repository, tag) = match rest.rsplit_once(':') {
            Some((repository, tag)) if !tag.contains('/') => (repository, Some(tag)),
            _ => (rest, None),
        };
        let part_ok = |part: &str| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
        };
        if !repository.split('/').all(part_ok) {
            return Err(invalid(
                "has a repository name that is not lower-case letters, digits, `.`, `_`, `-` and `/`",
            ));
        }
        let tag_ok = |tag: &str| {
            (1..=128).contains(&tag.len())
                && !tag.starts_with(['.', '-'])
                && tag
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        };
        if tag.is_some_and(|tag| !tag_ok(tag)) {
            return Err(invalid("has an invalid tag"));
        }
        Ok(Self {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            tag: tag.map(str::to_owned),
            digest,
        })
    }
}

impl fmt::Display for ComponentReference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Whether `hex` is a SHA-256 in lowercase hex, as digests write it.
pub fn is_sha256_hex(hex: &str) -> bool {
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
        assert_eq!(reference.manifest_reference(), "v1");
        let digest = format!("sha256:{}", "a".repeat(64));
        let pinned: ComponentReference = format!("oci://ghcr.io/org/hello:v1@{digest}")
            .parse()
            .unwrap();
        assert_eq!(
            pinned.to_string(),
            format!("oci://ghcr.io/org/hello:v1@{digest}")
        );
        assert_eq!(pinned.manifest_reference(), digest);
        let untagged: ComponentReference = "oci://localhost/hello".parse().unwrap();
        assert_eq!(untagged.manifest_reference(), "latest");

        for wrong in [
            "oci://hello:v1",
            "oci://library/hello",
            "oci://ghcr.io/Hello",
            "oci://ghcr.io/hello@sha256:abc",
            "oci://ghcr.io//hello",
            "oci://ghcr.io/hello:-v1",
        ] {
            assert!(wrong.parse::<ComponentReference>().is_err(), "{wrong}");
        }
    }
}
