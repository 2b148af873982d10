//! What `wasi-host serve --help` says about each flag: the environment variable it also
//! reads and its default. Tests that mean "the host's default" read it here, from the
//! binary under test, rather than from the host's source.

use std::process::Command;

/// The text of `wasi-host serve --help`.
pub struct ServeHelp {
    text: String,
}

impl ServeHelp {
    /// Runs `wasi-host serve --help`.
    pub fn read() -> Self {
        let output = Command::new(env!("CARGO_BIN_EXE_wasi-host"))
            .args(["serve", "--help"])
            .output()
            .expect("run wasi-host serve --help");
        assert!(output.status.success(), "{output:?}");
        Self {
            text: String::from_utf8(output.stdout).expect("UTF-8 help"),
        }
    }

    /// The default `--help` gives `flag` (such as `--port`); fails when it gives none.
    pub fn default_of(&self, flag: &str) -> String {
        self.bracketed(flag, "default: ")
            .unwrap_or_else(|| panic!("no default for {flag} in:\n{}", self.section(flag)))
    }

    /// The environment variable `--help` says `flag` also reads, if any.
    pub fn env_of(&self, flag: &str) -> Option<String> {
        let env = self.bracketed(flag, "env: ")?;
        Some(env.split('=').next().unwrap_or_default().to_owned())
    }

    /// The `[NAME VALUE]` annotation `name` (`default: `, `env: `) of `flag`.
    fn bracketed(&self, flag: &str, name: &str) -> Option<String> {
        let section = self.section(flag);
        let start = section.find(&format!("[{name}"))? + 1 + name.len();
        let end = start + section[start..].find(']')?;
        Some(section[start..end].to_owned())
    }

    /// The lines that describe `flag`: from the line that names it to the next flag's.
    fn section(&self, flag: &str) -> String {
        // `--name` or `-n`; a list item (`- text: ...`) in a description is not one.
        let is_flag_line = |line: &str| {
            let mut chars = line.trim_start().chars();
            chars.next() == Some('-')
                && chars
                    .next()
                    .is_some_and(|c| c == '-' || c.is_ascii_alphanumeric())
        };
        let names_flag = |line: &str| {
            is_flag_line(line) && line.trim_start().split([' ', ',', '=']).any(|w| w == flag)
        };
        let mut lines = self.text.lines().skip_while(|line| !names_flag(line));
        let first = lines
            .next()
            .unwrap_or_else(|| panic!("no {flag} in:\n{}", self.text));
        let rest = lines.take_while(|line| !is_flag_line(line));
        std::iter::once(first)
            .chain(rest)
            .collect::<Vec<_>>()
            .join("\n")
    }
}
