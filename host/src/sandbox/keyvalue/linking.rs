//! What every key-value interface links the same way: the opened-store resource, and
//! calling a store operation from a guest, blocking (0.2 functions) or concurrent (0.3
//! `async` functions).

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;

use wasmtime::component::{
    ComponentNamedList, ComponentType, Lift, LinkerInstance, Lower, Resource, ResourceType,
};
use wasmtime::{Result, StoreContextMut};

use super::guest::{KeyValueError, Operation};
use super::stores::NamedStore;
use crate::sandbox::store::InstanceState;

/// A store a guest opened, as the resource of the interface `I` names.
pub struct Opened<I> {
    pub(super) store: Arc<NamedStore>,
    _interface: PhantomData<fn() -> I>,
}

impl<I: 'static> Opened<I> {
    /// Opens `name` for the instance and puts it in its table.
    pub(super) fn open(
        state: &mut InstanceState,
        name: &str,
    ) -> Result<Result<Resource<Self>, KeyValueError>> {
        let (context, table) = state.key_value();
        let store = match context.open(name) {
            Ok(store) => store,
            Err(error) => return Ok(Err(error)),
        };
        let opened = Self {
            store,
            _interface: PhantomData,
        };
        Ok(Ok(table.push(opened)?))
    }

    /// An operation on the store `opened` holds.
    pub(super) fn begin(
        state: &mut InstanceState,
        opened: &Resource<Self>,
    ) -> Result<Result<Operation, KeyValueError>> {
        let (context, table) = state.key_value();
        let store = table.get(opened)?.store.clone();
        Ok(context.begin(&store))
    }

    /// Drops the guest's handle.
    pub(super) fn close(state: &mut InstanceState, rep: u32) -> Result<()> {
        let (_, table) = state.key_value();
        table.delete(Resource::<Self>::new_own(rep))?;
        Ok(())
    }
}

/// What an operation's call answers, in the guest's terms.
type Answer<R> = Pin<Box<dyn Future<Output = Result<R, KeyValueError>> + Send>>;

/// The parameters of a function on an opened store: the store, then the rest.
pub trait OnStore<I>: ComponentNamedList + Lift + Send + 'static {
    type Rest: Send + 'static;
    fn split(self) -> (Resource<Opened<I>>, Self::Rest);
}

impl<I: 'static> OnStore<I> for (Resource<Opened<I>>,) {
    type Rest = ();
    fn split(self) -> (Resource<Opened<I>>, ()) {
        (self.0, ())
    }
}

impl<I: 'static, A: Lift + Send + 'static> OnStore<I> for (Resource<Opened<I>>, A) {
    type Rest = A;
    fn split(self) -> (Resource<Opened<I>>, A) {
        self
    }
}

impl<I: 'static, A: Lift + Send + 'static, B: Lift + Send + 'static> OnStore<I>
    for (Resource<Opened<I>>, A, B)
{
    type Rest = (A, B);
    fn split(self) -> (Resource<Opened<I>>, (A, B)) {
        (self.0, (self.1, self.2))
    }
}

/// How an interface's functions are called: blocking the guest (WASI 0.2), or `async`
/// (WASI 0.3).
pub trait Calling {
    /// Defines `name`, a function on an opened store that answers `result<R, E>`.
    fn define<I, P, R, E>(
        instance: &mut LinkerInstance<'_, InstanceState>,
        name: &str,
        call: fn(Operation, P::Rest) -> Answer<R>,
    ) -> Result<()>
    where
        I: 'static,
        P: OnStore<I>,
        R: ComponentType + Lower + Send + Sync + 'static,
        E: ComponentType + Lower + From<KeyValueError> + Send + Sync + 'static;
}

/// A WASI 0.2 interface's function: the guest waits, its host call does not block.
pub struct Blocking;

/// A WASI 0.3 interface's `async` function.
pub struct Concurrent;

impl Calling for Blocking {
    fn define<I, P, R, E>(
        instance: &mut LinkerInstance<'_, InstanceState>,
        name: &str,
        call: fn(Operation, P::Rest) -> Answer<R>,
    ) -> Result<()>
    where
        I: 'static,
        P: OnStore<I>,
        R: ComponentType + Lower + Send + Sync + 'static,
        E: ComponentType + Lower + From<KeyValueError> + Send + Sync + 'static,
    {
        instance.func_wrap_async(
            name,
            move |mut store: StoreContextMut<'_, InstanceState>, params: P| {
                Box::new(async move {
                    let (opened, rest) = params.split();
                    let answer = match Opened::begin(store.data_mut(), &opened)? {
                        Ok(operation) => call(operation, rest).await,
                        Err(error) => Err(error),
                    };
                    Ok((answer.map_err(E::from),))
                })
            },
        )
    }
}

impl Calling for Concurrent {
    fn define<I, P, R, E>(
        instance: &mut LinkerInstance<'_, InstanceState>,
        name: &str,
        call: fn(Operation, P::Rest) -> Answer<R>,
    ) -> Result<()>
    where
        I: 'static,
        P: OnStore<I>,
        R: ComponentType + Lower + Send + Sync + 'static,
        E: ComponentType + Lower + From<KeyValueError> + Send + Sync + 'static,
    {
        instance.func_wrap_concurrent(name, move |accessor, params: P| {
            Box::pin(async move {
                let (opened, rest) = params.split();
                let begun = accessor.with(|mut access| Opened::begin(access.get(), &opened))?;
                let answer = match begun {
                    Ok(operation) => call(operation, rest).await,
                    Err(error) => Err(error),
                };
                Ok((answer.map_err(E::from),))
            })
        })
    }
}

/// The resource `resource` and its `get`, `set`, `delete` and `exists`, which every
/// interface has, answering errors as `E`.
pub(super) fn add_store_resource<I, E, C>(
    instance: &mut LinkerInstance<'_, InstanceState>,
    resource: &str,
) -> Result<()>
where
    I: 'static,
    E: ComponentType + Lower + From<KeyValueError> + Send + Sync + 'static,
    C: Calling,
{
    let ty = ResourceType::host::<Opened<I>>();
    instance.resource(resource, ty, |mut store, rep| {
        Opened::<I>::close(store.data_mut(), rep)
    })?;
    let method = |name: &str| format!("[method]{resource}.{name}");
    C::define::<I, (Resource<Opened<I>>, String), Option<Vec<u8>>, E>(
        instance,
        &method("get"),
        |op, key| Box::pin(async move { op.get(&key).await }),
    )?;
    C::define::<I, (Resource<Opened<I>>, String, Vec<u8>), (), E>(
        instance,
        &method("set"),
        |op, (key, value)| Box::pin(async move { op.set(&key, &value).await }),
    )?;
    C::define::<I, (Resource<Opened<I>>, String), (), E>(
        instance,
        &method("delete"),
        |op, key| Box::pin(async move { op.delete(&key).await }),
    )?;
    C::define::<I, (Resource<Opened<I>>, String), bool, E>(
        instance,
        &method("exists"),
        |op, key| Box::pin(async move { op.exists(&key).await }),
    )
}
