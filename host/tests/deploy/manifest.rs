//! Loading manifests, and the host settings a container's environment gives.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_yaml::Value;

use crate::help::ServeHelp;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// Reads `path` (relative to the workspace root) as text.
pub fn read(path: &str) -> String {
    std::fs::read_to_string(workspace().join(path))
        .unwrap_or_else(|error| panic!("cannot read {path}: {error}"))
}

/// Parses the YAML document at `path` (relative to the workspace root).
pub fn load(path: &str) -> Value {
    serde_yaml::from_str(&read(path)).unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// The string at `value`, failing with `what` when it is missing or not a string.
pub fn str<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what} should be a string, found {value:?}"))
}

/// The integer at `value`, failing with `what` when it is missing or not an integer.
pub fn int(value: &Value, what: &str) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("{what} should be a whole number, found {value:?}"))
}

/// The only container of a pod spec (Knative's or Kubernetes').
pub fn only_container(pod: &Value) -> &Value {
    let containers = pod["containers"]
        .as_sequence()
        .expect("the pod spec lists containers");
    assert_eq!(containers.len(), 1, "one container: the host");
    &containers[0]
}

/// A setting of the host in `container`: the value its `env` gives the variable `flag`
/// reads, or else the host's default, both as `wasi-host serve --help` tells them.
pub fn setting(container: &Value, help: &ServeHelp, flag: &str) -> String {
    let variable = help
        .env_of(flag)
        .unwrap_or_else(|| panic!("{flag} reads no environment variable"));
    env(container, &variable).map_or_else(|| help.default_of(flag), str::to_owned)
}

/// A whole-number setting of the host, as [`setting`].
pub fn int_setting(container: &Value, help: &ServeHelp, flag: &str) -> u64 {
    let value = setting(container, help, flag);
    value
        .parse()
        .unwrap_or_else(|error| panic!("{flag} {value}: {error}"))
}

/// A duration setting of the host, as [`setting`] but in `humantime` notation.
pub fn duration_setting(container: &Value, help: &ServeHelp, flag: &str) -> Duration {
    let value = setting(container, help, flag);
    humantime::parse_duration(&value).unwrap_or_else(|error| panic!("{flag} {value}: {error}"))
}

/// The value `container` gives the environment variable `name`, if any.
pub fn env<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"]
        .as_sequence()?
        .iter()
        .find(|var| var["name"].as_str() == Some(name))
        .map(|var| str(&var["value"], name))
}

/// The HTTP probes of `container`: `(kind, path, port)` for each `*Probe` with `httpGet`.
pub fn http_probes(container: &Value) -> Vec<(String, &str, &Value)> {
    let fields = container.as_mapping().expect("a container is a mapping");
    fields
        .iter()
        .filter_map(|(key, probe)| {
            let kind = key.as_str()?.strip_suffix("Probe")?;
            let get = &probe["httpGet"];
            let path = str(&get["path"], &format!("{kind}Probe.httpGet.path"));
            Some((kind.to_owned(), path, &get["port"]))
        })
        .collect()
}

/// Lines of `text` that set a container's image: the line deploying replaces.
pub fn image_lines(text: &str) -> usize {
    text.lines()
        .filter(|line| line.trim_start().starts_with("image:"))
        .count()
}
