//! How a busy guest shares its thread: one thread advances the engine's epoch every
//! tick, and each store's epoch callback makes a guest that computes for long yield to
//! other requests.

use std::time::Duration;

use wasmtime::{Engine, EngineWeak, Store, UpdateDeadline};

/// How often the engine's epoch advances. Past its first slice, a running guest yields
/// to other requests at every tick and notices its deadline within one tick.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Ticks a guest runs before it first yields: 40 to 50 ms. Most requests finish inside
/// it, so an instance, once started, usually runs to completion, and a CPU-bound load
/// keeps about one live instance per core instead of interleaving every admitted
/// request, each with its own dirtied heap. Only guests that run longer are time-sliced.
const FIRST_SLICE_TICKS: u64 = 5;

/// Starts the one thread that advances `engine`'s epoch every [`EPOCH_TICK`]. It holds a
/// weak reference and stops when the engine is dropped.
pub fn start_epoch_ticker(engine: &Engine) -> std::io::Result<()> {
    let engine: EngineWeak = engine.weak();
    std::thread::Builder::new()
        .name("epoch-ticker".into())
        .spawn(move || {
            while let Some(engine) = engine.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .map(drop)
}

/// Makes a guest of `store` that computes past its first slice yield to the other
/// work on its thread at every tick. It is never interrupted here: a guest past its
/// deadline is stopped by retiring its instance (see [`super::instances`]), which the
/// yields give the chance to happen.
pub fn yield_when_busy<T>(store: &mut Store<T>) {
    store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Yield(1)));
    store.set_epoch_deadline(FIRST_SLICE_TICKS);
}
