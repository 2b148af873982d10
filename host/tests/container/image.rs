//! The image under test, built once per run: a static musl host and the hello guest from
//! this workspace, put in a `build` context laid out like the Dockerfile's build stage,
//! and the Dockerfile's runtime stage built around it with podman. No base image is
//! pulled: the runtime stage starts from `scratch`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::dockerfile::{BUILD_STAGE, Dockerfile};

/// Repository of the images these tests build; each run tags its own with its process id.
const REPOSITORY: &str = "localhost/wasi-host-test";

/// The target the image's host binary is built for.
const MUSL: &str = "x86_64-unknown-linux-musl";

/// A built image.
pub struct Image {
    /// Its id, which containers are started from (the tag can move).
    pub id: String,
}

/// Builds the image the first time it is called; later calls reuse it.
pub fn image() -> &'static Image {
    static IMAGE: OnceLock<Image> = OnceLock::new();
    IMAGE.get_or_init(build)
}

/// The workspace root.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

fn build() -> Image {
    let root = workspace();
    let dockerfile = Dockerfile::read(&root.join("Dockerfile"));
    // A target directory of its own: the musl release build neither waits for nor
    // invalidates the other tests' builds.
    let target_dir = root.join("target").join("container");
    cargo_build(
        &root,
        &target_dir,
        &dockerfile,
        &["-p", "wasi-host", "--target", MUSL],
    );
    cargo_build(
        &root,
        &target_dir,
        &dockerfile,
        &["-p", "hello", "--target", "wasm32-wasip2"],
    );

    let context = tempfile::tempdir().expect("temporary directory");
    let build_stage = context.path().join(BUILD_STAGE);
    let out = build_stage.join("out");
    std::fs::create_dir_all(&out).expect("create the build context");
    copy(
        &target_dir.join(MUSL).join("release/wasi-host"),
        &out.join("wasi-host"),
    );
    copy(
        &target_dir.join("wasm32-wasip2/release/hello.wasm"),
        &out.join("hello.wasm"),
    );
    // The Dockerfile's build stage precompiles the guest with the host it ships.
    let compiled = Command::new(out.join("wasi-host"))
        .arg("compile")
        .arg(out.join("hello.wasm"))
        .arg("-o")
        .arg(out.join("hello.cwasm"))
        .status()
        .expect("run wasi-host compile");
    assert!(compiled.success(), "wasi-host compile failed: {compiled}");

    let runtime_stage = context.path().join("runtime");
    std::fs::create_dir(&runtime_stage).expect("mkdir");
    std::fs::write(
        runtime_stage.join("Containerfile"),
        dockerfile.runtime_stage(),
    )
    .expect("write the Containerfile");

    remove_stale_images();
    build_image(
        &runtime_stage,
        "",
        &[
            "--build-context".to_owned(),
            format!("{BUILD_STAGE}={}", build_stage.display()),
        ],
    )
}

/// The README's "new guest, new layer" Dockerfile built on `base`, with the testbed guest
/// as its `app.wasm`.
pub fn guest_layer_image(base: &Image) -> Image {
    let root = workspace();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("read README.md");
    let layer = readme
        .split("```Dockerfile\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("README.md shows a Dockerfile block");
    let containerfile = layer.replacen("FROM wasi-host", &format!("FROM {}", base.id), 1);
    assert_ne!(
        containerfile, layer,
        "the README's Dockerfile starts FROM wasi-host"
    );

    let target_dir = root.join("target").join("container");
    let dockerfile = Dockerfile::read(&root.join("Dockerfile"));
    cargo_build(
        &root,
        &target_dir,
        &dockerfile,
        &["-p", "testbed", "--target", "wasm32-wasip2"],
    );
    let context = tempfile::tempdir().expect("temporary directory");
    copy(
        &target_dir.join("wasm32-wasip2/release/testbed.wasm"),
        &context.path().join("app.wasm"),
    );
    std::fs::write(context.path().join("Containerfile"), containerfile)
        .expect("write the Containerfile");
    build_image(context.path(), "-guest", &[])
}

/// Builds the Containerfile in `context` (with extra `podman build` flags), tagged for
/// this run, with `suffix` after the run's process id.
fn build_image(context: &Path, suffix: &str, flags: &[String]) -> Image {
    let tag = format!("{REPOSITORY}:{}{suffix}", std::process::id());
    let iidfile = tempfile::NamedTempFile::new().expect("temporary file");
    podman(
        Command::new("podman")
            .args(["build", "--pull=never", "--tag", &tag, "--iidfile"])
            .arg(iidfile.path())
            .args(flags)
            .arg(context),
    );
    let id = std::fs::read_to_string(iidfile.path()).expect("read the image id");
    Image {
        id: id.trim().to_owned(),
    }
}

/// `cargo build --release` with the Dockerfile's `CARGO_*` settings.
fn cargo_build(root: &Path, target_dir: &Path, dockerfile: &Dockerfile, args: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(root)
        .args(["build", "--release", "--locked"])
        .args(args)
        .arg("--target-dir")
        .arg(target_dir)
        .envs(dockerfile.cargo_env())
        .status()
        .expect("run cargo");
    assert!(
        status.success(),
        "cargo build {args:?} failed: {status} (scripts/setup.sh installs the targets and musl-tools)"
    );
}

fn copy(from: &Path, to: &Path) {
    std::fs::copy(from, to).unwrap_or_else(|error| {
        panic!(
            "cannot copy {} (scripts/setup.sh installs what is missing): {error}",
            from.display()
        )
    });
}

/// Removes the images of earlier runs whose process is gone, so repeated runs do not
/// pile up images; a run still going keeps its own.
fn remove_stale_images() {
    let tags = podman(
        Command::new("podman")
            .args(["images", "--format", "{{.Tag}}", "--filter"])
            .arg(format!("reference={REPOSITORY}")),
    );
    for tag in tags.lines() {
        let pid = tag.split('-').next().unwrap_or_default();
        let gone = pid
            .parse::<u32>()
            .is_ok_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
        if gone {
            // Failing here (say, a container of that run still exists) only leaves the image.
            let _ = Command::new("podman")
                .args(["rmi", &format!("{REPOSITORY}:{tag}")])
                .output();
        }
    }
}

/// Runs a podman command to success and returns its standard output.
pub fn podman(command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|error| {
        panic!("cannot run podman (scripts/setup.sh installs it): {error}")
    });
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("podman prints UTF-8")
}

/// `podman image inspect --format FORMAT` of `image`.
pub fn inspect(image: &Image, format: &str) -> String {
    podman(Command::new("podman").args(["image", "inspect", "--format", format, &image.id]))
        .trim()
        .to_owned()
}
