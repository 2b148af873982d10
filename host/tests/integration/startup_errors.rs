//! Every way a component can be unusable ends the process before it binds, with one
//! message that names the file and the problem.

use std::path::Path;

use crate::util::{guests, serve_refused};

/// Runs `serve` on `component` and returns its stderr, checking that it failed without
/// ever listening.
fn refused(component: &Path) -> String {
    refused_with(component, &[])
}

/// [`refused`], with `flags`.
fn refused_with(component: &Path, flags: &[&str]) -> String {
    let stderr = serve_refused(component, flags, &[]);
    let error_lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(error_lines.len(), 1, "expected one error line in: {stderr}");
    assert!(
        stderr.contains(&component.display().to_string()),
        "the message does not name the file: {stderr}"
    );
    stderr
}

#[test]
fn missing_file() {
    let stderr = refused(Path::new("/nonexistent/missing.wasm"));
    assert!(stderr.contains("cannot read component"), "{stderr}");
    assert!(stderr.contains("No such file or directory"), "{stderr}");
}

#[test]
fn core_module_instead_of_component() {
    let dir = tempfile::tempdir().expect("tempdir");
    let core = dir.path().join("core.wasm");
    // The smallest valid core module: magic and version 1, no sections.
    std::fs::write(&core, b"\0asm\x01\0\0\0").expect("write");
    let stderr = refused(&core);
    assert!(
        stderr.contains("is a core WebAssembly module, not a component"),
        "{stderr}"
    );
}

#[test]
fn not_webassembly_at_all() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = dir.path().join("notes.wasm");
    std::fs::write(&text, "just text").expect("write");
    let stderr = refused(&text);
    assert!(
        stderr.contains("is not a WebAssembly component"),
        "{stderr}"
    );
}

#[test]
fn component_of_the_wrong_world() {
    let stderr = refused(&guests().command);
    assert!(
        stderr.contains("is not a wasi:http/proxy component"),
        "{stderr}"
    );
    assert!(
        stderr.contains("wasi:cli/run"),
        "names what it exports: {stderr}"
    );
}

#[test]
fn component_with_an_import_the_host_lacks() {
    let stderr = refused(&guests().unsupported_import);
    assert!(
        stderr.contains("imports something this host does not provide"),
        "{stderr}"
    );
    assert!(stderr.contains("test:unsupported/secrets"), "{stderr}");
}

#[test]
fn component_whose_table_is_larger_than_allowed() {
    let stderr = refused_with(&guests().testbed, &["--max-table-elements", "1"]);
    assert!(stderr.contains("table"), "{stderr}");
    assert!(stderr.contains("exceeds the limit of 1"), "{stderr}");
}
