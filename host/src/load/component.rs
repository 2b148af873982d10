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
    /// A wasmtime artifact at `path`; `source`, when it was found beside a `.wasm`
    /// compiled into it, names that `.wasm`, which is compiled instead if the artifact
    /// does not fit this engine.
    Precompiled {
        path: PathBuf,
        source: Option<TiedSource>,
    },
    /// A wasmtime artifact the primary worker compiled and handed to this secondary.
    Handed(bytes::Bytes),
}

/// The `.wasm` a `.cwasm` beside it was compiled from, as its content shows.
struct TiedSource {
    path: PathBuf,
    /// The `.wasm`'s SHA-256, in lowercase hex: the one the `.cwasm` records.
    sha256: String,
}

impl ComponentBytes {
    /// Reads the component at `path`: a `.wasm`, or a `.cwasm` from `wasi-host compile`.
    /// For a `.wasm`, the `.cwasm` beside it is used instead if it was compiled from
    /// these very bytes (it records their SHA-256); a timestamp proves nothing, since
    /// `cp -p`, `rsync -t` and `touch` set them at will.
    pub fn read(path: &Path) -> Result<Self> {
        let component = Self::read_exactly(path)?;
        let sibling = default_precompiled_path(path);
        let Form::Wasm(bytes) = &component.form else {
            return Ok(component);
        };
        if sibling == path || !sibling.exists() {
            return Ok(component);
        }
        match compiled_from(&sibling, path, bytes) {
            Ok(Some(sha256)) => Ok(Self {
                origin: sibling.display().to_string(),
                form: Form::Precompiled {
                    path: sibling,
                    source: Some(TiedSource {
                        path: path.to_path_buf(),
                        sha256,
                    }),
                },
            }),
            Ok(None) => Ok(component),
            Err(error) => {
                tracing::warn!("ignoring `{}`: {error:#}", sibling.display());
                Ok(component)
            }
        }
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
                        source: None,
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

    /// The SHA-256 of the component, in lowercase hex: of the `.wasm` a `.cwasm` found
    /// beside it was compiled from, else of the file. It takes a moment on a large file
    /// (up to tens of milliseconds per 10 MB without the CPU's SHA instructions).
    pub fn sha256(&self) -> Result<String> {
        let mut hasher = Sha256::new();
        match &self.form {
            Form::Wasm(bytes) => hasher.update(bytes),
            Form::Handed(artifact) => hasher.update(artifact),
            Form::Precompiled {
                source: Some(source),
                ..
            } => return Ok(source.sha256.clone()),
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
        Form::Precompiled { path, source } => match deserialize(engine, path) {
            Ok(compiled) => {
                if let Some(source) = source {
                    tracing::info!(
                        "loaded `{}`, precompiled from `{}`",
                        component.origin,
                        source.path.display()
                    );
                }
                Ok(compiled)
            }
            Err(error) => match source.as_ref().map(|source| &source.path) {
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
    let Form::Wasm(wasm_bytes) = &component.form else {
        bail!("`{}` is already precompiled", input.display());
    };
    let compiled = compile(engine, wasm_bytes, &component.origin)?;
    // What `serve` checks by default: imports the host does not implement are stubs.
    let stub = UnimplementedImports::Stub;
    pre_instantiate(engine, linker, &compiled, &component.origin, stub)?;
    let mut bytes = compiled
        .serialize()
        .with_context(|| format!("cannot serialize `{}`", input.display()))?;
    record_source(&mut bytes, &Sha256::digest(wasm_bytes));
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

/// The SHA-256 of `wasm` (the bytes of the file at `wasm_path`), if `cwasm` is a
/// precompiled component compiled from them; `None`, logged, if it is not.
fn compiled_from(cwasm: &Path, wasm_path: &Path, wasm: &[u8]) -> Result<Option<String>> {
    let shown = cwasm.display();
    if !matches!(
        Engine::detect_precompiled_file(cwasm)?,
        Some(Precompiled::Component)
    ) {
        tracing::warn!("ignoring `{shown}`: it is not a precompiled component");
        return Ok(None);
    }
    let sha256 = format!("{:x}", Sha256::digest(wasm));
    if recorded_source(cwasm)?.as_deref() != Some(sha256.as_str()) {
        tracing::warn!(
            "ignoring `{shown}`: it was not compiled from `{}` as it is now; compile it \
             again with `wasi-host compile`",
            wasm_path.display()
        );
        return Ok(None);
    }
    Ok(Some(sha256))
}

/// What `wasi-host compile` appends to a `.cwasm`, after wasmtime's ELF object (whose
/// reader goes by the offsets in its headers and never reads past its sections): this
/// marker, then the raw SHA-256 of the `.wasm` compiled. wasmtime's own artifact has no
/// room for data of ours.
const SOURCE_MARKER: &[u8] = b"\0wasi-host:wasm-sha256\0";

/// Appends the SHA-256 of the `.wasm` compiled into `cwasm`.
fn record_source(cwasm: &mut Vec<u8>, wasm_sha256: &[u8]) {
    cwasm.extend_from_slice(SOURCE_MARKER);
    cwasm.extend_from_slice(wasm_sha256);
}

/// The SHA-256 (lowercase hex) of the `.wasm` the `.cwasm` at `path` was compiled from,
/// as [`record_source`] wrote it; `None` for a file compiled without it.
fn recorded_source(path: &Path) -> std::io::Result<Option<String>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let mut trailer = [0u8; SOURCE_MARKER.len() + 32];
    if file.metadata()?.len() < trailer.len() as u64 {
        return Ok(None);
    }
    file.seek(SeekFrom::End(-(trailer.len() as i64)))?;
    file.read_exact(&mut trailer)?;
    let (marker, sha256) = trailer.split_at(SOURCE_MARKER.len());
    Ok((marker == SOURCE_MARKER).then(|| sha256.iter().map(|b| format!("{b:02x}")).collect()))
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
