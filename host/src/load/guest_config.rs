//! The values a plain component reads through `wasi:config/store`: from a file
//! (`--config-file`), over it from host variables named `WASI_CONFIG_KEY`, and over those
//! from `--config KEY=VALUE`. They are resolved once, at startup, like the rest of the
//! host's settings; a file that cannot be read or parsed stops the host before it
//! binds, naming it. A Spin application's components read their variables instead (see
//! `spin::variables`).
//!
//! The file is TOML: one `key = "value"` per line, every value a string.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};

use crate::sandbox::variables::Variables;

/// The prefix of host variables that give config values: `WASI_CONFIG_API_URL=v` is
/// key `API_URL`, as written.
pub const ENV_PREFIX: &str = "WASI_CONFIG_";

/// Where a plain component's config values come from, checked but not yet read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestConfig {
    /// The `--config-file`, read at startup.
    pub file: Option<PathBuf>,
    /// The values from the environment and `--config`, which win over the file's.
    pub values: BTreeMap<String, String>,
}

impl GuestConfig {
    /// The `--config` `entries` (`KEY=VALUE`, each key once; empty entries skipped)
    /// over the `prefixed` host variables (named with [`ENV_PREFIX`]), and `file`.
    pub fn build(
        entries: &[String],
        prefixed: &[(String, String)],
        file: Option<PathBuf>,
    ) -> Result<Self> {
        let mut values = BTreeMap::new();
        for (name, value) in prefixed {
            let Some(key) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            ensure!(
                !key.is_empty(),
                "host variable `{name}` names no config key"
            );
            values.insert(key.to_owned(), value.clone());
        }
        let mut given = Vec::new();
        for entry in entries.iter().filter(|entry| !entry.is_empty()) {
            let Some((key, value)) = entry.split_once('=') else {
                bail!("invalid --config `{entry}`: expected KEY=VALUE");
            };
            ensure!(
                !key.is_empty(),
                "invalid --config `{entry}`: the key is empty"
            );
            ensure!(
                !given.contains(&key),
                "--config sets `{key}` more than once"
            );
            given.push(key);
            values.insert(key.to_owned(), value.to_owned());
        }
        Ok(Self { file, values })
    }

    /// Whether any value is configured.
    pub fn is_empty(&self) -> bool {
        self.file.is_none() && self.values.is_empty()
    }

    /// The values a guest reads: the file's, read now, under the others.
    pub fn resolve(&self) -> Result<Variables> {
        let mut values = match &self.file {
            Some(file) => read_file(file)?,
            None => BTreeMap::new(),
        };
        values.extend(self.values.clone());
        Ok(Variables::new(values))
    }
}

/// The values in `file`.
fn read_file(file: &Path) -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the config file `{}`", file.display()))?;
    parse(&text).with_context(|| format!("invalid config file `{}`", file.display()))
}

/// A config file's values: a TOML table of strings.
fn parse(text: &str) -> Result<BTreeMap<String, String>> {
    let table: toml::Table = text.parse()?;
    table
        .into_iter()
        .map(|(key, value)| match value {
            toml::Value::String(text) => Ok((key, text)),
            other => bail!(
                "`{key}` is not a string but {}: write `{key} = \"...\"`",
                other.type_str()
            ),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|entry| entry.to_string()).collect()
    }

    #[test]
    fn flags_win_over_the_environment() {
        let prefixed = [
            ("WASI_CONFIG_greeting".to_owned(), "from env".to_owned()),
            ("WASI_CONFIG_API_URL".to_owned(), "https://api".to_owned()),
        ];
        let config = GuestConfig::build(
            &strings(&["greeting=hello", "", "query=a=b"]),
            &prefixed,
            None,
        )
        .unwrap();
        assert_eq!(
            config.values,
            BTreeMap::from([
                ("API_URL".into(), "https://api".into()),
                ("greeting".into(), "hello".into()),
                ("query".into(), "a=b".into()),
            ])
        );
    }

    #[test]
    fn bad_entries_are_refused() {
        let error = |entries: &[&str], prefixed: &[(&str, &str)]| {
            let prefixed: Vec<(String, String)> = prefixed
                .iter()
                .map(|(name, value)| (name.to_string(), value.to_string()))
                .collect();
            GuestConfig::build(&strings(entries), &prefixed, None)
                .unwrap_err()
                .to_string()
        };
        assert!(error(&["novalue"], &[]).contains("expected KEY=VALUE"));
        assert!(error(&["=x"], &[]).contains("the key is empty"));
        assert!(error(&["a=1", "a=2"], &[]).contains("`a` more than once"));
        assert!(error(&[], &[("WASI_CONFIG_", "x")]).contains("names no config key"));
    }

    #[test]
    fn a_file_is_a_table_of_strings() {
        let values = parse("greeting = \"hello\"\n\"api.url\" = \"https://api\"\n").unwrap();
        assert_eq!(
            values,
            BTreeMap::from([
                ("api.url".into(), "https://api".into()),
                ("greeting".into(), "hello".into()),
            ])
        );
        let error = format!("{:#}", parse("port = 8080\n").unwrap_err());
        assert!(
            error.contains("`port` is not a string but integer"),
            "{error}"
        );
        assert!(parse("[section]\nkey = \"v\"\n").is_err());
        assert!(parse("not toml").is_err());
    }
}
