//! Reads the Dockerfile, so the tests build what the image builds instead of a copy.

use std::path::Path;

/// The `FROM` line that starts the image's final stage.
const RUNTIME_STAGE: &str = "FROM scratch AS runtime";

/// The stage name the runtime stage copies every file from.
pub const BUILD_STAGE: &str = "build";

/// The repository's Dockerfile, split where the runtime stage begins.
pub struct Dockerfile {
    build: String,
    runtime: String,
}

impl Dockerfile {
    /// Reads `path` and finds its runtime stage.
    pub fn read(path: &Path) -> Self {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
        let start = text
            .find(RUNTIME_STAGE)
            .unwrap_or_else(|| panic!("{} has no `{RUNTIME_STAGE}` stage", path.display()));
        let (build, runtime) = text.split_at(start);
        assert!(
            !runtime[RUNTIME_STAGE.len()..].contains("\nFROM "),
            "the runtime stage must be the Dockerfile's last"
        );
        Self {
            build: build.to_owned(),
            runtime: runtime.to_owned(),
        }
    }

    /// The runtime stage, from its `FROM` line to the end: a Containerfile of its own
    /// once a `build` context stands in for the build stage.
    pub fn runtime_stage(&self) -> &str {
        &self.runtime
    }

    /// The `CARGO_*` variables the build stage sets with `ENV`, which change what cargo
    /// builds (profile settings such as stripping).
    pub fn cargo_env(&self) -> Vec<(String, String)> {
        self.build
            .lines()
            .filter_map(|line| line.strip_prefix("ENV "))
            .flat_map(str::split_whitespace)
            .filter_map(|pair| pair.split_once('='))
            .filter(|(name, _)| name.starts_with("CARGO_"))
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect()
    }
}
