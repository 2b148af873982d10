//! Spin's own key-value interfaces: `spin:key-value/key-value@3.0.0` (Spin 4's SDKs,
//! `async` functions for WASI 0.3 guests) and `fermyon:spin/key-value@2.0.0` (Spin 2
//! and 3's SDKs).

use wasmtime::component::{
    ComponentType, FutureReader, Lift, Linker, Lower, Resource, StreamReader,
};
use wasmtime::{Result, StoreContextMut};

use super::guest::KeyValueError;
use super::linking::{Blocking, Calling, Concurrent, Opened, add_store_resource};
use crate::sandbox::store::InstanceState;

/// Both versions' `error`.
#[derive(Debug, Clone, PartialEq, Eq, ComponentType, Lift, Lower)]
#[component(variant)]
pub enum SpinError {
    #[component(name = "store-table-full")]
    StoreTableFull,
    #[component(name = "no-such-store")]
    NoSuchStore,
    #[component(name = "access-denied")]
    AccessDenied,
    #[component(name = "other")]
    Other(String),
}

impl From<KeyValueError> for SpinError {
    fn from(error: KeyValueError) -> Self {
        match error {
            KeyValueError::AccessDenied => Self::AccessDenied,
            KeyValueError::Other(message) => Self::Other(message),
        }
    }
}

/// The store of `spin:key-value@3.0.0`.
pub struct Spin3;
/// The store of `fermyon:spin/key-value@2.0.0`.
pub struct Fermyon2;

type Store<I> = Resource<Opened<I>>;

/// The keys, then the outcome of listing them.
type KeysAndOutcome = (StreamReader<String>, FutureReader<Result<(), SpinError>>);

pub fn add_to_linker(linker: &mut Linker<InstanceState>) -> Result<()> {
    add_spin3(linker)?;
    add_fermyon2(linker)
}

fn add_spin3(linker: &mut Linker<InstanceState>) -> Result<()> {
    let mut kv = linker.instance("spin:key-value/key-value@3.0.0")?;
    add_store_resource::<Spin3, SpinError, Concurrent>(&mut kv, "store")?;
    kv.func_wrap_concurrent("[static]store.open", |accessor, (name,): (String,)| {
        Box::pin(async move {
            let opened = accessor.with(|mut access| Opened::<Spin3>::open(access.get(), &name))?;
            Ok((opened.map_err(SpinError::from),))
        })
    })?;
    kv.func_wrap_concurrent(
        "[method]store.get-keys",
        |accessor, (opened,): (Store<Spin3>,)| {
            Box::pin(async move {
                let begun = accessor.with(|mut access| Opened::begin(access.get(), &opened))?;
                let listed = match begun {
                    Ok(operation) => operation.keys().await,
                    Err(error) => Err(error),
                };
                let (keys, outcome) = match listed {
                    Ok(keys) => (keys, Ok(())),
                    Err(error) => (Vec::new(), Err(SpinError::from(error))),
                };
                accessor.with(|mut access| -> Result<(KeysAndOutcome,)> {
                    let keys = StreamReader::new(&mut access, keys)?;
                    let outcome = std::future::ready(Ok::<_, wasmtime::Error>(outcome));
                    Ok(((keys, FutureReader::new(&mut access, outcome)?),))
                })
            })
        },
    )
}

fn add_fermyon2(linker: &mut Linker<InstanceState>) -> Result<()> {
    let mut kv = linker.instance("fermyon:spin/key-value@2.0.0")?;
    add_store_resource::<Fermyon2, SpinError, Blocking>(&mut kv, "store")?;
    kv.func_wrap(
        "[static]store.open",
        |mut store: StoreContextMut<'_, InstanceState>, (name,): (String,)| {
            let opened = Opened::<Fermyon2>::open(store.data_mut(), &name)?;
            Ok((opened.map_err(SpinError::from),))
        },
    )?;
    Blocking::define::<Fermyon2, (Store<Fermyon2>,), Vec<String>, SpinError>(
        &mut kv,
        "[method]store.get-keys",
        |op, ()| Box::pin(async move { op.keys().await }),
    )
}
