//! The image as a platform sees it: its size and user, and a container's life from start
//! to `podman stop` under each runtime.

use std::time::Duration;

use crate::container::{Container, Runtime};
use crate::image::{guest_layer_image, image, inspect};

/// The port the README says the image listens on unless `$PORT` says otherwise.
const DEFAULT_PORT: u16 = 8080;

/// The probe path the README documents.
const HEALTH_PATH: &str = "/.well-known/wasi-host/health";

/// The largest image we ship: a small image pulls fast on a cold start. It is ~32 MB:
/// the host binary, three quarters of it wasmtime with Cranelift (which lets a new
/// `.wasm` ship without rebuilding the image) and both WASI versions' bindings.
const MAX_IMAGE_BYTES: u64 = 36_000_000;

/// Longest `podman stop` may take: an idle host exits at once on SIGTERM, far inside the
/// 10 s after which the platform kills it (gVisor adds its own teardown).
const MAX_STOP_TIME: Duration = Duration::from_secs(3);

#[test]
fn image_is_small_runs_as_non_root_and_exposes_the_default_port() {
    let image = image();
    let size: u64 = inspect(image, "{{.Size}}").parse().expect("image size");
    eprintln!("image size: {size} bytes");
    assert!(
        size <= MAX_IMAGE_BYTES,
        "the image is {size} bytes, more than {MAX_IMAGE_BYTES}"
    );
    assert_eq!(inspect(image, "{{.Config.User}}"), "65532:65532");
    assert!(
        inspect(image, "{{json .Config.ExposedPorts}}")
            .contains(&format!("\"{DEFAULT_PORT}/tcp\"")),
        "the image should expose the default port {DEFAULT_PORT}"
    );
}

#[test]
fn serves_and_stops_cleanly_under_runc() {
    serves_and_stops_cleanly(Runtime::Runc);
}

#[test]
fn serves_and_stops_cleanly_under_gvisor() {
    serves_and_stops_cleanly(Runtime::Runsc);
}

fn serves_and_stops_cleanly(runtime: Runtime) {
    let container = Container::start(image(), runtime);
    container.wait_ready(HEALTH_PATH);

    let (status, body) = container.get("/").expect("GET /");
    assert_eq!((status, body.as_str()), (200, "Hello, World!"));
    assert!(
        container
            .logs()
            .contains(&format!("listening on http://0.0.0.0:{}/", container.port)),
        "the host should listen on $PORT on all interfaces"
    );
    // The image runs a worker per CPU the container may use: on one CPU, the one
    // process it starts.
    let cpus = std::thread::available_parallelism().map_or(1, |cpus| cpus.get());
    if cpus > 1 {
        let line = format!("worker {cpus} of {cpus} serving");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !container.logs().contains(&line) {
            assert!(
                std::time::Instant::now() < deadline,
                "no {line:?} in:\n{}",
                container.logs()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    } else {
        eprintln!("one CPU: the image is checked to start no second worker");
        assert!(
            !container.logs().contains("worker 2 of"),
            "{}",
            container.logs()
        );
    }

    let took = container.stop();
    eprintln!("{runtime:?}: podman stop took {took:?}");
    assert_eq!(
        container.inspect("{{.State.ExitCode}}"),
        "0",
        "SIGTERM should end the host with exit code 0"
    );
    assert!(
        took < MAX_STOP_TIME,
        "podman stop took {took:?}: SIGTERM should end the host at once"
    );
}

#[test]
fn a_new_guest_is_a_layer_on_the_unchanged_host_image() {
    let base = image();
    let layered = guest_layer_image(base);
    let layers = |image| -> Vec<String> {
        serde_json::from_str(&inspect(image, "{{json .RootFS.Layers}}")).expect("layer list")
    };
    let (base_layers, layered_layers) = (layers(base), layers(&layered));
    assert_eq!(
        layered_layers[..base_layers.len()],
        base_layers[..],
        "the host's layers are reused unchanged"
    );
    assert_eq!(layered_layers.len(), base_layers.len() + 1, "one new layer");

    let container = Container::start(&layered, Runtime::Runc);
    container.wait_ready(HEALTH_PATH);
    let (status, body) = container.get("/build").expect("GET /build");
    assert_eq!(
        (status, body.as_str()),
        (200, "v1"),
        "the new guest answers"
    );
    container.stop();
    assert_eq!(container.inspect("{{.State.ExitCode}}"), "0");
}
