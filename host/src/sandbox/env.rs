//! The environment a guest sees through `wasi:cli/environment`: Cloud Run's names for the
//! service (when the host has them) and the operator's `--env` values. Nothing else from
//! the host's environment reaches a guest, so the host's own settings and secrets stay
//! with the host. The list is built once at startup and copied into each instance.

use std::sync::Arc;

use anyhow::{Result, bail, ensure};

/// Variables Cloud Run (Knative) sets to name the service, revision and configuration;
/// a guest gets each one the host has.
pub const PLATFORM_VARIABLES: [&str; 3] = ["K_SERVICE", "K_REVISION", "K_CONFIGURATION"];

/// The variables every guest instance gets, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuestEnv(Arc<[(String, String)]>);

impl GuestEnv {
    /// The platform variables found by `host_var`, then `entries` (`KEY=VALUE` each, as
    /// given with `--env`). An entry may replace a platform variable but not another
    /// entry; empty entries are skipped, so a list ending in a newline is fine. A bad
    /// entry is named by its place in the list, never quoted: its value may be a secret.
    pub fn build(entries: &[String], host_var: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let mut explicit: Vec<(String, String)> = Vec::new();
        let numbered = (1..).zip(entries);
        for (place, entry) in numbered.filter(|(_, entry)| !entry.is_empty()) {
            let Some((key, value)) = entry.split_once('=') else {
                bail!("invalid --env entry {place}: expected KEY=VALUE");
            };
            ensure!(
                is_valid_key(key),
                "invalid --env entry {place}: a key is a letter or `_` followed by letters, \
                 digits or `_`"
            );
            ensure!(
                !explicit.iter().any(|(seen, _)| seen == key),
                "--env sets `{key}` more than once"
            );
            explicit.push((key.to_owned(), value.to_owned()));
        }
        let mut vars: Vec<(String, String)> = PLATFORM_VARIABLES
            .into_iter()
            .filter(|name| !explicit.iter().any(|(key, _)| key == name))
            .filter_map(|name| Some((name.to_owned(), host_var(name)?)))
            .collect();
        vars.extend(explicit);
        Ok(Self(vars.into()))
    }

    /// These variables over `defaults` (a component's own environment, from its
    /// manifest): the operator's values replace the component's, key by key.
    pub fn over(&self, defaults: &[(String, String)]) -> Self {
        let mut vars: Vec<(String, String)> = defaults
            .iter()
            .filter(|(key, _)| !self.0.iter().any(|(own, _)| own == key))
            .cloned()
            .collect();
        vars.extend(self.0.iter().cloned());
        Self(vars.into())
    }

    /// The variables as `(KEY, VALUE)` pairs.
    pub fn vars(&self) -> &[(String, String)] {
        &self.0
    }
}

/// A portable variable name (POSIX): a letter or `_`, then letters, digits or `_`.
pub fn is_valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(list: &[&str]) -> Vec<String> {
        list.iter().map(|entry| entry.to_string()).collect()
    }

    fn cloud_run(name: &str) -> Option<String> {
        match name {
            "K_SERVICE" => Some("shop".into()),
            "K_REVISION" => Some("shop-00007".into()),
            _ => None,
        }
    }

    #[test]
    fn platform_variables_come_first_and_entries_keep_their_order() {
        let env = GuestEnv::build(&entries(&["B=2", "A=x=y", "", "EMPTY="]), cloud_run).unwrap();
        let pairs: Vec<(&str, &str)> = env
            .vars()
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("K_SERVICE", "shop"),
                ("K_REVISION", "shop-00007"),
                ("B", "2"),
                ("A", "x=y"),
                ("EMPTY", "")
            ]
        );
    }

    #[test]
    fn an_entry_replaces_a_platform_variable() {
        let env = GuestEnv::build(&entries(&["K_SERVICE=other"]), cloud_run).unwrap();
        assert_eq!(
            env.vars(),
            [
                ("K_REVISION".into(), "shop-00007".into()),
                ("K_SERVICE".into(), "other".into())
            ]
        );
    }

    #[test]
    fn bad_entries_are_refused() {
        let error = |list: &[&str]| {
            GuestEnv::build(&entries(list), |_| None)
                .unwrap_err()
                .to_string()
        };
        assert!(error(&["NOVALUE"]).contains("expected KEY=VALUE"));
        assert!(error(&["=1"]).contains("a key is a letter"));
        assert!(error(&["1A=1"]).contains("a key is a letter"));
        assert!(error(&["A-B=1"]).contains("a key is a letter"));
        assert!(error(&["A=1", "A=2"]).contains("`A` more than once"));
    }

    #[test]
    fn a_bad_entry_is_named_by_its_place_and_its_value_never_shown() {
        let error = |list: &[&str]| {
            GuestEnv::build(&entries(list), |_| None)
                .unwrap_err()
                .to_string()
        };
        let no_key = error(&["A=1", "", "s3cret-token"]);
        assert!(no_key.contains("entry 3"), "{no_key}");
        let bad_key = error(&["API-KEY=s3cret-token"]);
        assert!(bad_key.contains("entry 1"), "{bad_key}");
        for shown in [no_key, bad_key] {
            assert!(!shown.contains("s3cret"), "{shown}");
        }
    }
}
