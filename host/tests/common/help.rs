//! What `wasi-host --help` says about each flag and argument: the environment variable it
//! also reads and its default. Tests that mean "the host's default" read it here, from
//! the binary under test, rather than from the host's source.

use std::process::Command;

/// One flag or argument as the help lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelpEntry {
    /// `--port`, or `COMPONENT` for an argument.
    pub name: String,
    /// The variable from `[env: NAME=...]`.
    pub env: Option<String>,
    /// The value from `[default: VALUE]`.
    pub default: Option<String>,
}

/// What `wasi-host ARGS` prints, in an empty environment so that no variable's value
/// shows in an `[env: ...]` annotation.
pub fn help(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_wasi-host"))
        .args(args)
        .env_clear()
        .output()
        .expect("run wasi-host");
    assert!(
        output.status.success(),
        "wasi-host {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("the help is UTF-8")
}

/// The name a help line starts an entry with: `--long` for a flag (after `-s, ` if it
/// has a short form), `NAME` for an argument shown as `<NAME>` or `[NAME]`.
fn entry_name(line: &str) -> Option<String> {
    let line = line.trim_start();
    let flag = line
        .split(", ")
        .find_map(|part| part.strip_prefix("--"))
        .filter(|_| line.starts_with('-'));
    if let Some(long) = flag {
        let name: String = long
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        return (!name.is_empty()).then(|| format!("--{name}"));
    }
    let close = match line.chars().next()? {
        '<' => '>',
        '[' => ']',
        _ => return None,
    };
    let name = line[1..].split(close).next()?;
    let is_argument = !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c == '_');
    is_argument.then(|| name.to_owned())
}

/// The value of an annotation such as `[env: PORT=]` or `[default: 8080]` in `text`,
/// up to `end`.
fn annotation<'a>(text: &'a str, label: &str, end: &[char]) -> Option<&'a str> {
    let start = text.find(&format!("[{label}: "))? + label.len() + 3;
    let rest = &text[start..];
    Some(rest[..rest.find(end)?].trim())
}

/// The entries of a help text. An entry starts at a line that names a flag or an
/// argument and runs to the next one, or to a heading at the start of a line
/// ("Options:", "Arguments:" or a group's own).
pub fn entries(help: &str) -> Vec<HelpEntry> {
    let indent = |line: &str| line.len() - line.trim_start().len();
    // In the long help each description, annotations included, stands in a column of its
    // own; every entry's first line is indented less. (In the short help an entry is one
    // line, annotations and all.)
    let description_column = help
        .lines()
        .filter(|line| {
            let text = line.trim_start();
            text.starts_with("[env: ") || text.starts_with("[default: ")
        })
        .map(indent)
        .min()
        .unwrap_or(usize::MAX);
    let mut entries: Vec<(String, String)> = Vec::new();
    for line in help.lines() {
        let name = entry_name(line).filter(|_| indent(line) < description_column);
        if let Some(name) = name {
            entries.push((name, line.to_owned()));
        } else if indent(line) > 0 || line.trim().is_empty() {
            if let Some((_, text)) = entries.last_mut() {
                text.push(' ');
                text.push_str(line.trim());
            }
        } else {
            entries.push((String::new(), String::new()));
        }
    }
    entries
        .into_iter()
        .filter(|(name, _)| !name.is_empty())
        .map(|(name, text)| HelpEntry {
            env: annotation(&text, "env", &['=', ']']).map(str::to_owned),
            default: annotation(&text, "default", &[']']).map(str::to_owned),
            name,
        })
        .collect()
}

/// The entries of `wasi-host serve --help`.
pub struct ServeHelp {
    entries: Vec<HelpEntry>,
}

impl ServeHelp {
    /// Runs `wasi-host serve --help`.
    pub fn read() -> Self {
        Self {
            entries: entries(&help(&["serve", "--help"])),
        }
    }

    /// The default `--help` gives `flag` (such as `--port`); fails when it gives none.
    pub fn default_of(&self, flag: &str) -> String {
        self.entry(flag)
            .default
            .clone()
            .unwrap_or_else(|| panic!("no default for {flag} in `serve --help`"))
    }

    /// The environment variable `--help` says `flag` also reads, if any.
    pub fn env_of(&self, flag: &str) -> Option<String> {
        self.entry(flag).env.clone()
    }

    fn entry(&self, flag: &str) -> &HelpEntry {
        self.entries
            .iter()
            .find(|entry| entry.name == flag)
            .unwrap_or_else(|| panic!("no {flag} in `serve --help`: {:?}", self.entries))
    }
}
