//! `wasi:keyvalue` store, atomics and batch, at the two drafts guests import:
//! `0.2.0-draft2` (Spin's SDKs, with compare-and-swap) and `0.2.0-draft` (wasmtime's
//! own `wasmtime-wasi-keyvalue`, whose in-memory store these replace). Every key comes
//! in one page: `list-keys` never answers with a cursor.

use wasmtime::component::{ComponentType, Lift, Linker, LinkerInstance, Lower, Resource};
use wasmtime::{Result, StoreContextMut};

use super::drafts::{Draft, Draft2, WasiError};
use super::guest::KeyValueError;
use super::linking::{Blocking, Calling, Opened, add_store_resource};
use crate::sandbox::store::InstanceState;

/// `key-response`, its cursor a string (`draft2`) or a number (`draft`).
#[derive(Debug, Clone, ComponentType, Lift, Lower)]
#[component(record)]
pub struct KeyResponse<C> {
    keys: Vec<String>,
    cursor: Option<C>,
}

type Bucket<I> = Resource<Opened<I>>;

pub fn add_to_linker(linker: &mut Linker<InstanceState>) -> Result<()> {
    add_draft2(linker)?;
    add_draft(linker)
}

fn add_draft2(linker: &mut Linker<InstanceState>) -> Result<()> {
    let mut store = linker.instance("wasi:keyvalue/store@0.2.0-draft2")?;
    add_store::<Draft2>(&mut store)?;
    Blocking::define::<Draft2, (Bucket<Draft2>, Option<String>), KeyResponse<String>, WasiError>(
        &mut store,
        "[method]bucket.list-keys",
        |operation, _cursor| {
            Box::pin(async move {
                let keys = operation.keys().await?;
                Ok(KeyResponse::<String> { keys, cursor: None })
            })
        },
    )?;
    let mut atomics = linker.instance("wasi:keyvalue/atomics@0.2.0-draft2")?;
    Blocking::define::<Draft2, (Bucket<Draft2>, String, i64), i64, WasiError>(
        &mut atomics,
        "increment",
        |operation, (key, delta)| Box::pin(async move { operation.increment(&key, delta).await }),
    )?;
    super::cas::add_to_linker(&mut atomics)?;
    let mut batch = linker.instance("wasi:keyvalue/batch@0.2.0-draft2")?;
    add_batch::<Draft2>(&mut batch)?;
    Blocking::define::<
        Draft2,
        (Bucket<Draft2>, Vec<String>),
        Vec<(String, Option<Vec<u8>>)>,
        WasiError,
    >(&mut batch, "get-many", |operation, keys| {
        Box::pin(async move {
            let values = operation.get_many(&keys).await?;
            Ok(keys.into_iter().zip(values).collect::<Vec<_>>())
        })
    })
}

fn add_draft(linker: &mut Linker<InstanceState>) -> Result<()> {
    let mut store = linker.instance("wasi:keyvalue/store@0.2.0-draft")?;
    add_store::<Draft>(&mut store)?;
    Blocking::define::<Draft, (Bucket<Draft>, Option<u64>), KeyResponse<u64>, WasiError>(
        &mut store,
        "[method]bucket.list-keys",
        |operation, _cursor| {
            Box::pin(async move {
                let keys = operation.keys().await?;
                Ok(KeyResponse::<u64> { keys, cursor: None })
            })
        },
    )?;
    let mut atomics = linker.instance("wasi:keyvalue/atomics@0.2.0-draft")?;
    Blocking::define::<Draft, (Bucket<Draft>, String, u64), u64, WasiError>(
        &mut atomics,
        "increment",
        |operation, (key, delta)| {
            Box::pin(async move {
                let delta = i64::try_from(delta).map_err(|_| too_large("the increment"))?;
                let value = operation.increment(&key, delta).await?;
                u64::try_from(value).map_err(|_| too_large("the counter, negative,"))
            })
        },
    )?;
    let mut batch = linker.instance("wasi:keyvalue/batch@0.2.0-draft")?;
    add_batch::<Draft>(&mut batch)?;
    Blocking::define::<Draft, (Bucket<Draft>, Vec<String>), Vec<Option<(String, Vec<u8>)>>, WasiError>(
        &mut batch,
        "get-many",
        |operation, keys| {
            Box::pin(async move {
                let values = operation.get_many(&keys).await?;
                let found = keys.into_iter().zip(values);
                Ok(found
                    .map(|(key, value)| value.map(|value| (key, value)))
                    .collect::<Vec<_>>())
            })
        },
    )
}

fn too_large(what: &str) -> KeyValueError {
    KeyValueError::Other(format!(
        "{what} does not fit this draft's unsigned 64-bit counter"
    ))
}

/// `open`, and the bucket resource and its methods both drafts share.
fn add_store<I: 'static>(store: &mut LinkerInstance<'_, InstanceState>) -> Result<()> {
    add_store_resource::<I, WasiError, Blocking>(store, "bucket")?;
    store.func_wrap(
        "open",
        |mut store: StoreContextMut<'_, InstanceState>, (name,): (String,)| {
            let opened = Opened::<I>::open(store.data_mut(), &name)?;
            Ok((opened.map_err(WasiError::from),))
        },
    )
}

/// `set-many` and `delete-many`, the same in both drafts.
fn add_batch<I: 'static>(batch: &mut LinkerInstance<'_, InstanceState>) -> Result<()> {
    Blocking::define::<I, (Bucket<I>, Vec<(String, Vec<u8>)>), (), WasiError>(
        batch,
        "set-many",
        |op, pairs| Box::pin(async move { op.set_many(&pairs).await }),
    )?;
    Blocking::define::<I, (Bucket<I>, Vec<String>), (), WasiError>(
        batch,
        "delete-many",
        |op, keys| Box::pin(async move { op.delete_many(&keys).await }),
    )
}
