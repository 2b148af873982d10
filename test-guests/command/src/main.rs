//! A plain WASI command. It exports `wasi:cli/run`, not `wasi:http/incoming-handler`,
//! so an HTTP host must refuse it.

fn main() {
    println!("a command, not an HTTP handler");
}
