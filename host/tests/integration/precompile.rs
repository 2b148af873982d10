//! `wasi-host compile` and serving its `.cwasm`: directly, found beside the `.wasm`,
//! and refused (or replaced by a fresh compile) when it does not match this host.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::swap::{Build, assert_swapped_to};
use crate::util::{TestServer, assert_hello, guests, run_host};

/// Copies the hello guest into a fresh directory.
fn hello_in_tempdir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let wasm = dir.path().join("hello.wasm");
    std::fs::copy(&guests().hello, &wasm).expect("copy hello");
    (dir, wasm)
}

fn compile(args: &[&Path]) -> std::process::Output {
    let mut all = vec!["compile"];
    all.extend(args.iter().map(|p| p.to_str().expect("utf-8 path")));
    run_host(&all)
}

/// Rewrites the wasmtime version recorded in a `.cwasm` (`"48"` after a version byte 0
/// and a length byte 2), as if another wasmtime release had made it.
fn make_foreign(cwasm: &Path) {
    let mut bytes = std::fs::read(cwasm).expect("read cwasm");
    let marker = b"\x00\x0248";
    let at = bytes
        .windows(marker.len())
        .position(|window| window == marker)
        .expect("engine version in the cwasm");
    bytes[at + 2..at + 4].copy_from_slice(b"47");
    std::fs::write(cwasm, bytes).expect("write cwasm");
}

#[tokio::test]
async fn compiled_component_serves() {
    let (dir, wasm) = hello_in_tempdir();
    let cwasm = dir.path().join("out.cwasm");
    let output = compile(&[&wasm, Path::new("-o"), &cwasm]);
    assert!(output.status.success(), "{output:?}");
    let bytes = std::fs::read(&cwasm).expect("cwasm written");
    assert_eq!(&bytes[..4], b"\x7fELF", "a precompiled artifact");

    let server = TestServer::start(&cwasm);
    assert_hello(&server).await;
}

/// Sets the modification time of the file at `path`.
fn set_mtime(path: &Path, time: SystemTime) {
    let file = std::fs::File::options()
        .write(true)
        .open(path)
        .expect("open");
    file.set_modified(time).expect("set mtime");
}

#[tokio::test]
async fn the_cwasm_beside_the_wasm_is_used_only_if_compiled_from_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wasm = dir.path().join("app.wasm");
    std::fs::write(&wasm, Build::V1.bytes()).expect("copy guest");
    let output = compile(&[&wasm]);
    assert!(output.status.success(), "{output:?}");
    let cwasm = wasm.with_extension("cwasm");
    assert!(cwasm.exists(), "compile writes beside the input by default");

    let server = TestServer::start(&wasm);
    server.assert_logged("precompiled from");
    assert_swapped_to(&server, Build::V1).await;
    drop(server);

    // A .wasm touched after compiling, its bytes the same: the .cwasm still fits.
    set_mtime(&wasm, SystemTime::now() + Duration::from_secs(60));
    let server = TestServer::start(&wasm);
    server.assert_logged("precompiled from");
    drop(server);

    // A new .wasm copied in with an old timestamp (`cp -p`), and then with the stale
    // .cwasm touched after it: neither may serve the old code.
    let compiled_at = std::fs::metadata(&cwasm).unwrap().modified().unwrap();
    std::fs::write(&wasm, Build::V2.bytes()).expect("replace the guest");
    set_mtime(&wasm, compiled_at - Duration::from_secs(3600));
    for stale in ["older .wasm", "touched .cwasm"] {
        if stale == "touched .cwasm" {
            set_mtime(&cwasm, SystemTime::now() + Duration::from_secs(60));
        }
        let server = TestServer::start(&wasm);
        assert_swapped_to(&server, Build::V2).await;
        server.assert_logged("was not compiled from");
        assert!(!server.log().contains("precompiled from"), "{stale}");
    }
}

#[test]
fn cwasm_from_another_wasmtime_is_refused_with_a_clear_message() {
    let (_dir, wasm) = hello_in_tempdir();
    assert!(compile(&[&wasm]).status.success());
    let cwasm = wasm.with_extension("cwasm");
    make_foreign(&cwasm);
    let output = run_host(&["serve", cwasm.to_str().unwrap(), "--addr", "127.0.0.1:0"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(!stderr.contains("listening on"), "{stderr}");
    assert!(
        stderr.contains("was precompiled by another wasmtime version"),
        "{stderr}"
    );
    assert!(
        stderr.contains("compile it again with `wasi-host compile`"),
        "{stderr}"
    );
}

#[tokio::test]
async fn foreign_cwasm_beside_the_wasm_is_replaced_by_compiling() {
    let (_dir, wasm) = hello_in_tempdir();
    assert!(compile(&[&wasm]).status.success());
    make_foreign(&wasm.with_extension("cwasm"));
    let server = TestServer::start(&wasm);
    server.assert_logged("compiling");
    assert_hello(&server).await;
}

#[test]
fn compile_makes_the_same_checks_as_serve() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = compile(&[
        &guests().command,
        Path::new("-o"),
        &dir.path().join("x.cwasm"),
    ]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("is not a wasi:http/proxy component"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("x.cwasm").exists(),
        "nothing written on failure"
    );
}

#[test]
fn compile_refuses_to_overwrite_its_input() {
    let (_dir, wasm) = hello_in_tempdir();
    let cwasm = wasm.with_extension("cwasm");
    assert!(compile(&[&wasm, Path::new("-o"), &cwasm]).status.success());
    let output = compile(&[&cwasm]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("refusing to overwrite"), "{stderr}");
}

/// Whether the boolean code setting `name` (a Cranelift ISA flag such as `has_avx2`) is
/// on in `cwasm`. wasmtime records its settings in the artifact's engine section, in
/// postcard: the name (a length byte, then its bytes), then `FlagValue::Bool` (variant
/// 2) and the value.
fn code_setting(cwasm: &[u8], name: &str) -> bool {
    let mut entry = vec![u8::try_from(name.len()).expect("a short name")];
    entry.extend_from_slice(name.as_bytes());
    let at = cwasm
        .windows(entry.len())
        .position(|window| window == entry)
        .unwrap_or_else(|| panic!("no {name} in the engine settings"));
    match cwasm[at + entry.len()..][..2] {
        [2, value] => value == 1,
        ref other => panic!("{name} is not a boolean setting: {other:?}"),
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn compiled_code_targets_the_x86_64_v2_baseline_not_this_cpu() {
    let (_dir, wasm) = hello_in_tempdir();
    assert!(compile(&[&wasm]).status.success());
    let cwasm = std::fs::read(wasm.with_extension("cwasm")).expect("read cwasm");
    for feature in [
        "has_sse3",
        "has_ssse3",
        "has_sse41",
        "has_sse42",
        "has_popcnt",
        "has_cmpxchg16b",
    ] {
        assert!(
            code_setting(&cwasm, feature),
            "{feature} is part of x86-64-v2"
        );
    }
    // Beyond the baseline, whatever this machine's CPU has.
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    for (feature, cpu_flag) in [
        ("has_avx", "avx"),
        ("has_avx2", "avx2"),
        ("has_fma", "fma"),
        ("has_bmi1", "bmi1"),
        ("has_bmi2", "bmi2"),
        ("has_lzcnt", "abm"),
        ("has_avx512f", "avx512f"),
    ] {
        let here = cpu.split_whitespace().any(|flag| flag == cpu_flag);
        assert!(
            !code_setting(&cwasm, feature),
            "{feature} is beyond x86-64-v2 (this CPU has it: {here})"
        );
    }
}

#[test]
fn version_names_the_wasmtime_a_cwasm_must_match() {
    let output = run_host(&["--version"]);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    // The wasmtime of the workspace's pin: every patch release needs a new `.cwasm`.
    let cargo_toml =
        std::fs::read_to_string(crate::util::workspace().join("Cargo.toml")).expect("Cargo.toml");
    let pinned = cargo_toml
        .lines()
        .find(|line| line.starts_with("wasmtime = "))
        .and_then(|line| line.split("\"=").nth(1))
        .and_then(|rest| rest.split('"').next())
        .expect("the wasmtime pin in Cargo.toml");
    assert_eq!(
        stdout.trim(),
        format!(
            "wasi-host {} (wasmtime {pinned})",
            env!("CARGO_PKG_VERSION")
        ),
        "{stdout}"
    );
}
