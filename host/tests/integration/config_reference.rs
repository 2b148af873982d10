//! The configuration reference, `docs/configuration.md`, against the real binary's help:
//! every flag and argument `--help` lists has a row in the reference, in the section of
//! its command, naming its environment variable and its default, so the page cannot
//! drift from the code.

use std::collections::BTreeSet;

use crate::help::{HelpEntry, entries, help};
use crate::util::workspace;

/// The reference's section headed `## TITLE`, to the next `## ` heading.
fn section<'a>(reference: &'a str, title: &str) -> &'a str {
    let heading = format!("\n## {title}\n");
    let start = reference
        .find(&heading)
        .unwrap_or_else(|| panic!("docs/configuration.md has no `## {title}` section"))
        + heading.len();
    let rest = &reference[start..];
    &rest[..rest.find("\n## ").unwrap_or(rest.len())]
}

/// What is wrong with `entry`'s row in `section`, if anything. A row's cells are the
/// flag, its variable, its default and what it does, each name in backticks.
fn row_problem(section: &str, entry: &HelpEntry) -> Option<String> {
    let quoted = |text: &str| format!("`{text}`");
    let row = section.lines().find_map(|line| {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        (line.starts_with('|') && cells.get(1) == Some(&quoted(&entry.name).as_str()))
            .then_some(cells)
    });
    let Some(cells) = row else {
        return Some(format!("{}: no row", entry.name));
    };
    let env_cell = cells.get(2).copied().unwrap_or_default();
    let expected_env = entry.env.as_deref().map(quoted).unwrap_or_default();
    if env_cell != expected_env {
        return Some(format!(
            "{}: the variable is {expected_env:?} in --help, {env_cell:?} in the row",
            entry.name
        ));
    }
    let default_cell = cells.get(3).copied().unwrap_or_default();
    match &entry.default {
        Some(default) if !default_cell.contains(&quoted(default)) => Some(format!(
            "{}: the default is `{default}` in --help, {default_cell:?} in the row",
            entry.name
        )),
        _ => None,
    }
}

/// Checks every entry of `wasi-host ARGS --help`, less those already checked as global,
/// against the section headed `title`; returns the entries found.
fn check_command(args: &[&str], title: &str, global: &BTreeSet<String>) -> Vec<HelpEntry> {
    let reference = std::fs::read_to_string(workspace().join("docs/configuration.md"))
        .expect("read docs/configuration.md");
    let mut argv = args.to_vec();
    argv.push("--help");
    let found = entries(&help(&argv));
    let section = section(&reference, title);
    let problems: Vec<String> = found
        .iter()
        .filter(|entry| !global.contains(&entry.name))
        .filter_map(|entry| row_problem(section, entry))
        .collect();
    assert!(
        problems.is_empty(),
        "docs/configuration.md, section \"{title}\", is out of date with `wasi-host {} \
         --help`:\n  {}",
        args.join(" "),
        problems.join("\n  ")
    );
    found
}

/// The flags every command takes, as the top-level help lists them.
fn global_flags() -> BTreeSet<String> {
    entries(&help(&["--help"]))
        .into_iter()
        .map(|entry| entry.name)
        .collect()
}

#[test]
fn every_global_flag_is_in_the_reference() {
    let found = check_command(&[], "Every command", &BTreeSet::new());
    assert!(
        found.iter().any(|entry| entry.name == "--log-format"
            && entry.env.as_deref() == Some("WASI_HOST_LOG_FORMAT")
            && entry.default.as_deref() == Some("auto")),
        "--log-format not read from the help: {found:?}"
    );
}

#[test]
fn every_serve_flag_is_in_the_reference_with_its_variable_and_default() {
    let found = check_command(&["serve"], "`wasi-host serve`", &global_flags());
    let port = HelpEntry {
        name: "--port".into(),
        env: Some("PORT".into()),
        default: Some("8080".into()),
    };
    assert!(
        found.contains(&port),
        "--port not read from the help: {found:?}"
    );
    assert!(
        found.iter().any(|entry| entry.name == "COMPONENT"
            && entry.env.as_deref() == Some("WASI_HOST_COMPONENT")),
        "the COMPONENT argument not read from the help: {found:?}"
    );
}

#[test]
fn every_compile_flag_is_in_the_reference() {
    let found = check_command(&["compile"], "`wasi-host compile`", &global_flags());
    let names: Vec<&str> = found.iter().map(|entry| entry.name.as_str()).collect();
    assert!(
        names.contains(&"COMPONENT") && names.contains(&"--output"),
        "compile's flags not read from the help: {found:?}"
    );
}

#[test]
fn short_and_long_help_list_the_same_entries() {
    // `-h` puts each flag on one line with its annotations; `--help` puts the text and
    // the annotations on lines of their own. The reading must not depend on the layout.
    for command in ["serve", "compile"] {
        let short = entries(&help(&[command, "-h"]));
        let long = entries(&help(&[command, "--help"]));
        assert_eq!(short, long, "`{command} -h` and `{command} --help` differ");
    }
}

#[test]
fn flags_under_headings_of_their_own_are_read() {
    // Groups of flags under headings (`next_help_heading`), laid out as clap lays out the
    // long help: a heading ends the entry above it, and the entries below it are read.
    let help = [
        "Options:",
        "      --port <PORT>",
        "          Port",
        "",
        "          [env: PORT=]",
        "          [default: 8080]",
        "",
        "Limits:",
        "      --max-memory <MAX_MEMORY>",
        "          Memory",
        "",
        "          [env: WASI_HOST_MAX_MEMORY=]",
        "          [default: 128MiB]",
        "",
        "  -h, --help",
        "          Print help",
    ]
    .join("\n");
    let entry = |name: &str, env: Option<&str>, default: Option<&str>| HelpEntry {
        name: name.into(),
        env: env.map(Into::into),
        default: default.map(Into::into),
    };
    assert_eq!(
        entries(&help),
        [
            entry("--port", Some("PORT"), Some("8080")),
            entry("--max-memory", Some("WASI_HOST_MAX_MEMORY"), Some("128MiB")),
            entry("--help", None, None),
        ]
    );
}

#[test]
fn a_stale_row_is_reported() {
    let entry = HelpEntry {
        name: "--port".into(),
        env: Some("PORT".into()),
        default: Some("8080".into()),
    };
    let table = "| flag | env | default | meaning |\n|---|---|---|---|\n";
    assert_eq!(
        row_problem(
            &format!("{table}| `--port` | `PORT` | `8080` | port |"),
            &entry
        ),
        None
    );
    for (row, problem) in [
        (
            "| `--addr` | `WASI_HOST_ADDR` | | address |",
            "--port: no row",
        ),
        (
            "| `--port` | `WASI_HOST_PORT` | `8080` | port |",
            "--port: the variable is \"`PORT`\" in --help, \"`WASI_HOST_PORT`\" in the row",
        ),
        (
            "| `--port` | `PORT` | `80` | port |",
            "--port: the default is `8080` in --help, \"`80`\" in the row",
        ),
    ] {
        assert_eq!(
            row_problem(&format!("{table}{row}"), &entry).as_deref(),
            Some(problem),
            "{row}"
        );
    }
}
