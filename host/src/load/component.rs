//! A component file turned into a ready-to-instantiate `ProxyPre`, or into one clear
//! error that names the file and the problem: read (or map, when precompiled), checked,
//! compiled, linked and pre-instantiated. `wasi-host compile` goes through the same
//! checks, so a file that compiles also serves.
//!
//! Errors here are `wasmtime::Error`, which keeps wasmtime's own context chain; callers
//! turn them into `anyhow::Error` with `?`.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::error::Context as _;
use wasmtime::{Engine, Precompiled, Result, bail};
use wasmtime_wasi_http::handler::ProxyPre;
use wasmtime_wasi_http::p2;
use wasmtime_wasi_http::p3::bindings::ServicePre;

use super::imports::{UnimplementedImports, link_unimplemented};
use crate::sandbox::store::InstanceState;

/// The export that makes a component a `wasi:http/proxy` handler (WASI 0.2).
const INCOMING_HANDLER: &str = "wasi:http/incoming-handler";

/// The export that makes a component a `wasi:http/service` handler (WASI 0.3).
const HANDLER: &str = "wasi:http/handler";

/// File extension of components precompiled by `wasi-host compile`.
const PRECOMPILED_EXTENSION: &str = "cwasm";

/// One component version's file, checked before compiling: a `.wasm` read into memory
/// (the bytes that are hashed are the bytes that are compiled), or a precompiled file,
/// which is mapped rather than read, so a large one costs nothing to open.
pub struct ComponentBytes {
    origin: String,
    form: Form,
}

/// What the file is, as far as can be told before compiling it.
enum Form {
    /// A `.wasm` component (or something claiming to be one: compiling checks it).
    Wasm(Vec<u8>),
    /// A wasmtime artifact at `path`; `fallback` is the `.wasm` it was found beside,
    /// compiled instead if the artifact does not fit this engine.
    Precompiled {
        path: PathBuf,
        fallback: Option<PathBuf>,
    },
    /// A wasmtime artifact the primary worker compiled and handed to this secondary.
    Handed(bytes::Bytes),
}

impl ComponentBytes {
    /// Reads the component at `path`: a `.wasm`, or a `.cwasm` from `wasi-host compile`.
    /// For a `.wasm`, a fresh `.cwasm` beside it is used instead.
    pub fn read(path: &Path) -> Result<Self> {
        if let Some(sibling) = fresh_precompiled_sibling(path) {
            match Engine::detect_precompiled_file(&sibling) {
                Ok(Some(Precompiled::Component)) => {
                    return Ok(Self {
                        origin: sibling.display().to_string(),
                        form: Form::Precompiled {
                            path: sibling,
                            fallback: Some(path.to_path_buf()),
                        },
                    });
                }
                Ok(_) => tracing::warn!(
                    "ignoring `{}`: it is not a precompiled component",
                    sibling.display()
                ),
                Err(error) => tracing::warn!("ignoring `{}`: {error:#}", sibling.display()),
            }
        }
        Self::read_exactly(path)
    }

    /// Reads the file at `path` itself, never a sibling.
    fn read_exactly(path: &Path) -> Result<Self> {
        let shown = path.display();
        let origin = shown.to_string();
        if is_elf(path).with_context(|| format!("cannot read component `{shown}`"))? {
            return match Engine::detect_precompiled_file(path)? {
                Some(Precompiled::Component) => Ok(Self {
                    origin,
                    form: Form::Precompiled {
                        path: path.to_path_buf(),
                        fallback: None,
                    },
                }),
                Some(Precompiled::Module) => {
                    bail!("`{shown}` is a precompiled core WebAssembly module, not a component")
                }
                None => bail!("`{shown}` is a native executable, not a WebAssembly component"),
            };
        }
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read component `{shown}`"))?;
        Ok(Self {
            origin,
            form: Form::Wasm(bytes),
        })
    }

    /// A component sent over the network. Precompiled artifacts are refused: wasmtime
    /// cannot tell a forged one from a real one, so only files an operator placed are
    /// deserialized.
    pub fn uploaded(bytes: Vec<u8>, origin: String) -> Result<Self> {
        if bytes.starts_with(ELF_MAGIC) {
            bail!(
                "`{origin}` is a precompiled artifact; upload the `.wasm` component instead \
                 (precompiled files are only loaded from disk)"
            );
        }
        Ok(Self {
            origin,
            form: Form::Wasm(bytes),
        })
    }

    /// A component the primary worker compiled, as `Component::serialize` wrote it, handed
    /// to this secondary over their private control connection (`--workers`): trusted
    /// like a `.cwasm` an operator placed, since only the primary can send it.
    pub fn handed_by_primary(artifact: bytes::Bytes, origin: String) -> Self {
        Self {
            origin,
            form: Form::Handed(artifact),
        }
    }

    /// Where the bytes came from: a path, or an upload.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The SHA-256 of the component, in lowercase hex. It takes a moment on a large
    /// file (up to tens of milliseconds per 10 MB without the CPU's SHA instructions).
    pub fn sha256(&self) -> Result<String> {
        let mut hasher = Sha256::new();
        match &self.form {
            Form::Wasm(bytes) => hasher.update(bytes),
            Form::Handed(artifact) => hasher.update(artifact),
            Form::Precompiled { path, .. } => {
                let cannot = || format!("cannot read `{}` to hash it", path.display());
                let mut file = std::fs::File::open(path).with_context(cannot)?;
                std::io::copy(&mut file, &mut hasher).with_context(cannot)?;
            }
        }
        Ok(format!("{:x}", hasher.finalize()))
    }
}

impl LoadedProxy {
    /// Another handle on the pre-instantiated component, for one more pool.
    pub fn pre(&self) -> ProxyPre<InstanceState> {
        match &self.proxy {
            ProxyPre::P2(pre) => ProxyPre::P2(pre.clone()),
            ProxyPre::P3(pre) => ProxyPre::P3(pre.clone()),
        }
    }
}

/// A component compiled, linked and pre-instantiated: ready to serve.
pub struct LoadedProxy {
    pub world: World,
    /// The compiled code, which the primary worker hands to the others.
    pub compiled: Component,
    /// The pre-instantiated component.
    pub proxy: ProxyPre<InstanceState>,
    /// The bytes it was made from.
    pub bytes: ComponentBytes,
}

/// Compiles (or deserializes) `component`, links it and pre-instantiates it. A
/// precompiled file that does not fit this engine is replaced by the `.wasm` it was
/// found beside, if any.
pub fn load_proxy(
    engine: &Engine,
    linker: &Linker<InstanceState>,
    component: ComponentBytes,
    imports: UnimplementedImports,
) -> Result<LoadedProxy> {
    let compiled = match &component.form {
        Form::Wasm(bytes) => compile(engine, bytes, &component.origin),
        Form::Handed(artifact) => deserialize_handed(engine, artifact),
        Form::Precompiled { path, fallback } => match deserialize(engine, path) {
            Ok(compiled) => {
                if let Some(wasm) = fallback {
                    tracing::info!(
                        "loaded `{}`, precompiled from `{}`",
                        component.origin,
                        wasm.display()
                    );
                }
                Ok(compiled)
            }
            Err(error) => match fallback {
                Some(wasm) => {
                    tracing::warn!(
                        "ignoring `{}` ({error:#}); compiling `{}` instead",
                        component.origin,
                        wasm.display()
                    );
                    let wasm = ComponentBytes::read_exactly(wasm)?;
                    return load_proxy(engine, linker, wasm, imports);
                }
                None => Err(error).with_context(|| {
                    format!(
                        "`{}` was precompiled by another wasmtime version or engine \
                         configuration; compile it again with `wasi-host compile`",
                        component.origin
                    )
                }),
            },
        },
    }?;
    let (world, proxy) = pre_instantiate(engine, linker, &compiled, &component.origin, imports)?;
    Ok(LoadedProxy {
        world,
        proxy,
        compiled,
        bytes: component,
    })
}

/// Compiles the component at `input` ahead of time into `output`, after the same checks
/// `serve` makes, so a file that compiles also serves. The output is written to a
/// temporary file and renamed into place, so a host watching it never reads half of it.
pub fn precompile(
    engine: &Engine,
    linker: &Linker<InstanceState>,
    input: &Path,
    output: &Path,
) -> Result<()> {
    if output == input {
        bail!(
            "refusing to overwrite `{}` with its own compiled form",
            input.display()
        );
    }
    let component = ComponentBytes::read_exactly(input)?;
    let Form::Wasm(bytes) = &component.form else {
        bail!("`{}` is already precompiled", input.display());
    };
    let compiled = compile(engine, bytes, &component.origin)?;
    // What `serve` checks by default: imports the host does not implement are stubs.
    let stub = UnimplementedImports::Stub;
    pre_instantiate(engine, linker, &compiled, &component.origin, stub)?;
    let bytes = compiled
        .serialize()
        .with_context(|| format!("cannot serialize `{}`", input.display()))?;
    let mut partial = output.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    std::fs::write(&partial, bytes)
        .and_then(|()| std::fs::rename(&partial, output))
        .with_context(|| format!("cannot write `{}`", output.display()))?;
    Ok(())
}

/// Where `compile` writes when no `-o` is given: beside the input, as `.cwasm`.
pub fn default_precompiled_path(input: &Path) -> PathBuf {
    input.with_extension(PRECOMPILED_EXTENSION)
}

/// The WASI HTTP world a component was built for, as its exports tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    /// `wasi:http/proxy`: it exports `wasi:http/incoming-handler@0.2.x`.
    Proxy,
    /// `wasi:http/service`: it exports `wasi:http/handler@0.3.x`.
    Service,
}

impl World {
    /// The world's name, with the WASI version.
    pub fn name(self) -> &'static str {
        match self {
            World::Proxy => "wasi:http/proxy@0.2",
            World::Service => "wasi:http/service@0.3",
        }
    }

    /// The WASI version alone, as metrics label it.
    pub fn wasi_version(self) -> &'static str {
        match self {
            World::Proxy => "0.2",
            World::Service => "0.3",
        }
    }

    /// Which world exports `names`, if either.
    fn of_exports<'a>(mut names: impl Iterator<Item = &'a str>) -> Option<Self> {
        names.find_map(|name| {
            let version = |interface: &str| name.strip_prefix(interface)?.strip_prefix('@');
            // A release candidate (`0.3.0-rc-...`) is another interface, not 0.3.
            let release_0_3 = |v: &str| v.starts_with("0.3.") && !v.contains('-');
            if version(HANDLER).is_some_and(release_0_3) {
                Some(World::Service)
            } else if name == INCOMING_HANDLER
                || version(INCOMING_HANDLER).is_some_and(|v| v.starts_with("0.2."))
            {
                Some(World::Proxy)
            } else {
                None
            }
        })
    }
}

/// Checks that `component` serves HTTP in either world, links what it imports (as
/// `imports` says for what the host does not implement) and pre-instantiates it.
fn pre_instantiate(
    engine: &Engine,
    linker: &Linker<InstanceState>,
    component: &Component,
    origin: &str,
    imports: UnimplementedImports,
) -> Result<(World, ProxyPre<InstanceState>)> {
    let component_type = component.component_type();
    let exports = component_type.exports(engine).map(|(name, _)| name);
    let Some(world) = World::of_exports(exports) else {
        let exports = export_names(engine, component);
        bail!(
            "`{origin}` is not a wasi:http/proxy component, nor a wasi:http/service one: it \
             exports neither {INCOMING_HANDLER}@0.2 nor {HANDLER}@0.3 (it exports: {exports})"
        );
    };
    let mut linker = linker.clone();
    let stubbed = link_unimplemented(&mut linker, engine, component, origin, imports)
        .map_err(wasmtime::Error::from_anyhow)?;
    if !stubbed.is_empty() {
        tracing::info!(
            "`{origin}` imports what this host does not implement; a call to one fails: {}",
            stubbed.join(", ")
        );
    }
    let instance_pre = linker
        .instantiate_pre(component)
        .with_context(|| format!("`{origin}` imports something this host does not provide"))?;
    let pre = match world {
        World::Service => ServicePre::new(instance_pre).map(ProxyPre::P3),
        World::Proxy => p2::bindings::ProxyPre::new(instance_pre).map(ProxyPre::P2),
    };
    let pre =
        pre.with_context(|| format!("`{origin}` does not match the {} world", world.name()))?;
    Ok((world, pre))
}

/// The first bytes of an ELF object, the container of precompiled artifacts.
const ELF_MAGIC: &[u8] = b"\x7fELF";

/// Whether the file starts like an ELF object, the container of precompiled artifacts.
fn is_elf(path: &Path) -> std::io::Result<bool> {
    use std::io::Read;
    let mut magic = [0u8; 4];
    let mut file = std::fs::File::open(path)?;
    match file.read_exact(&mut magic) {
        Ok(()) => Ok(magic == ELF_MAGIC),
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(error) => Err(error),
    }
}

/// A `.cwasm` beside `path` that is at least as new as it, so it was built from it (or
/// from what `path` was replaced with, if clocks were set back: then it is ignored).
fn fresh_precompiled_sibling(path: &Path) -> Option<PathBuf> {
    let sibling = default_precompiled_path(path);
    if sibling == path {
        return None;
    }
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let (source, precompiled) = (modified(path)?, modified(&sibling)?);
    if precompiled >= source {
        Some(sibling)
    } else {
        tracing::warn!(
            "ignoring `{}`: it is older than `{}`",
            sibling.display(),
            path.display()
        );
        None
    }
}

#[allow(unsafe_code)]
fn deserialize(engine: &Engine, path: &Path) -> Result<Component> {
    // SAFETY: wasmtime checks that the file is an artifact of this wasmtime version and
    // engine configuration before using it; what it cannot check is that it was made by
    // wasmtime and not forged, which is why only operators' own `.cwasm` files (from
    // `wasi-host compile`, placed on disk) are deserialized, never uploads. The file is
    // mapped, not copied: like an executable, it must be replaced by renaming a new
    // file over it (as `wasi-host compile` does), never rewritten in place.
    unsafe { Component::deserialize_file(engine, path) }
}

#[allow(unsafe_code)]
fn deserialize_handed(engine: &Engine, artifact: &[u8]) -> Result<Component> {
    // SAFETY: the artifact was serialized by the primary worker, the same executable with
    // the same engine configuration, and reached this process over the socket pair the
    // primary created for it, which nothing else can write to.
    unsafe { Component::deserialize(engine, artifact) }
        .context("cannot load the component the primary worker compiled")
}

fn compile(engine: &Engine, bytes: &[u8], origin: &str) -> Result<Component> {
    if wasmparser::Parser::is_core_wasm(bytes) {
        bail!(
            "`{origin}` is a core WebAssembly module, not a component; build it for \
             `wasm32-wasip2` or with `cargo component build`"
        );
    }
    if !wasmparser::Parser::is_component(bytes) {
        bail!("`{origin}` is not a WebAssembly component (no `\\0asm` component header)");
    }
    Component::new(engine, bytes).with_context(|| format!("cannot compile `{origin}`"))
}

fn export_names(engine: &Engine, component: &Component) -> String {
    let names: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    if names.is_empty() {
        "nothing".to_string()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_world_is_told_by_the_handler_exported() {
        let world = |exports: &[&str]| World::of_exports(exports.iter().copied());
        assert_eq!(
            world(&["wasi:http/incoming-handler@0.2.0"]),
            Some(World::Proxy)
        );
        assert_eq!(
            world(&["wasi:http/incoming-handler@0.2.12"]),
            Some(World::Proxy)
        );
        assert_eq!(world(&["wasi:http/incoming-handler"]), Some(World::Proxy));
        assert_eq!(
            world(&["exports", "wasi:http/handler@0.3.0"]),
            Some(World::Service)
        );
        assert_eq!(world(&["wasi:http/handler@0.3.2"]), Some(World::Service));
        for neither in [
            "wasi:http/incoming-handler@0.3.0",
            "wasi:http/handler@0.3.0-rc-2026-03-15",
            "wasi:http/handler@0.2.0",
            "wasi:cli/run@0.2.0",
        ] {
            assert_eq!(world(&[neither]), None, "{neither}");
        }
    }
}
