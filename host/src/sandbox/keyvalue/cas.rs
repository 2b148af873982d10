//! Compare-and-swap of `wasi:keyvalue/atomics@0.2.0-draft2`: a `cas` holds a key and
//! the value read when it was made; `swap` writes only if the key still holds that
//! value, and otherwise hands the `cas` back with the value the key holds now, ready
//! for the guest's next try.

use std::sync::Arc;

use wasmtime::component::{ComponentType, Lift, LinkerInstance, Lower, Resource, ResourceType};
use wasmtime::{Result, StoreContextMut};

use super::drafts::{Draft2, WasiError};
use super::guest::KeyValueError;
use super::linking::Opened;
use super::stores::NamedStore;
use crate::sandbox::store::InstanceState;

/// A key and the value it held when read.
pub struct Cas {
    store: Arc<NamedStore>,
    key: String,
    current: Option<Vec<u8>>,
}

/// `cas-error`.
#[derive(ComponentType, Lift, Lower)]
#[component(variant)]
enum CasError {
    #[component(name = "store-error")]
    StoreError(WasiError),
    #[component(name = "cas-failed")]
    CasFailed(Resource<Cas>),
}

/// The `cas` resource, its two functions, and `swap`, in the atomics interface.
pub fn add_to_linker(atomics: &mut LinkerInstance<'_, InstanceState>) -> Result<()> {
    atomics.resource("cas", ResourceType::host::<Cas>(), |mut store, rep| {
        let (_, table) = store.data_mut().key_value();
        table.delete(Resource::<Cas>::new_own(rep))?;
        Ok(())
    })?;
    atomics.func_wrap_async(
        "[static]cas.new",
        |mut store: StoreContextMut<'_, InstanceState>,
         (bucket, key): (Resource<Opened<Draft2>>, String)| {
            Box::new(async move {
                let state = store.data_mut();
                let opened = state.key_value().1.get(&bucket)?.store.clone();
                let answer = match read(state, &opened, &key).await {
                    Ok(current) => Ok(push(state, opened, key, current)?),
                    Err(error) => Err(WasiError::from(error)),
                };
                Ok((answer,))
            })
        },
    )?;
    atomics.func_wrap(
        "[method]cas.current",
        |mut store: StoreContextMut<'_, InstanceState>, (cas,): (Resource<Cas>,)| {
            let cas = store.data_mut().key_value().1.get(&cas)?;
            Ok((Ok::<_, WasiError>(cas.current.clone()),))
        },
    )?;
    atomics.func_wrap_async(
        "swap",
        |mut store: StoreContextMut<'_, InstanceState>, (cas, value): (Resource<Cas>, Vec<u8>)| {
            Box::new(async move { Ok((swap(store.data_mut(), cas, value).await?,)) })
        },
    )
}

/// The value at `key` in `store`, as one operation of the instance.
async fn read(
    state: &mut InstanceState,
    store: &Arc<NamedStore>,
    key: &str,
) -> Result<Option<Vec<u8>>, KeyValueError> {
    state.key_value().0.begin(store)?.get(key).await
}

fn push(
    state: &mut InstanceState,
    store: Arc<NamedStore>,
    key: String,
    current: Option<Vec<u8>>,
) -> Result<Resource<Cas>> {
    let cas = Cas {
        store,
        key,
        current,
    };
    Ok(state.key_value().1.push(cas)?)
}

async fn swap(
    state: &mut InstanceState,
    cas: Resource<Cas>,
    value: Vec<u8>,
) -> Result<Result<(), CasError>> {
    let Cas {
        store,
        key,
        current,
    } = state.key_value().1.delete(cas)?;
    let swapped = match state.key_value().0.begin(&store) {
        Ok(operation) => operation.swap_if(&key, current.as_deref(), &value).await,
        Err(error) => Err(error),
    };
    let error = |error: KeyValueError| CasError::StoreError(error.into());
    match swapped {
        Ok(true) => Ok(Ok(())),
        Ok(false) => match read(state, &store, &key).await {
            Ok(now) => Ok(Err(CasError::CasFailed(push(state, store, key, now)?))),
            Err(failure) => Ok(Err(error(failure))),
        },
        Err(failure) => Ok(Err(error(failure))),
    }
}
