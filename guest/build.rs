//! Links the guest with a 64 KiB stack instead of Rust's 1 MiB default: hello needs a
//! few KiB, and every instance's stack is part of the memory the host must reset
//! between requests.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        println!("cargo:rustc-link-arg=-zstack-size=65536");
    }
}
