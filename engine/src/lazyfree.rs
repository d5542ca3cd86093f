//! Lazy free (Redis's `lazyfree.c`): big values are dropped on a background thread so
//! that deleting a collection of millions of elements does not stall every client.
//!
//! UNLINK, FLUSHDB/FLUSHALL ASYNC and the `lazyfree-lazy-*` settings hand a value
//! here; values whose freeing is cheap (strings, small collections) are dropped on the
//! spot, as Redis does below its threshold of 64 allocations.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Mutex, OnceLock};

/// Values with more elements than this are freed in the background
/// (`LAZYFREE_THRESHOLD`).
pub(crate) const THRESHOLD: usize = 64;

static PENDING: AtomicU64 = AtomicU64::new(0);
static FREED: AtomicU64 = AtomicU64::new(0);

/// A value to drop, and how many objects it counts as.
type Garbage = (Box<dyn Send>, u64);

fn sender() -> Option<Sender<Garbage>> {
    static TX: OnceLock<Option<Mutex<Sender<Garbage>>>> = OnceLock::new();
    let tx = TX.get_or_init(|| {
        let (tx, rx) = channel::<Garbage>();
        let spawned = std::thread::Builder::new()
            .name("lazyfree".into())
            .spawn(move || {
                for (g, objects) in rx {
                    drop(g);
                    PENDING.fetch_sub(objects, Ordering::Relaxed);
                    FREED.fetch_add(objects, Ordering::Relaxed);
                }
            });
        // Without a thread, values are freed on the spot.
        spawned.ok().map(|_| Mutex::new(tx))
    });
    tx.as_ref()
        .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()).clone())
}

/// Frees `value` on the background thread when `effort` (its element count) is
/// above [`THRESHOLD`]; otherwise now.
pub(crate) fn free<T: Send + 'static>(value: T, effort: usize) {
    if effort > THRESHOLD {
        free_objects(value, 1);
    }
}

/// Frees `value`, which holds `objects` keys (a flushed database), on the background
/// thread whatever its size, as Redis's `emptyDbAsync` does.
pub(crate) fn free_objects<T: Send + 'static>(value: T, objects: u64) {
    if let Some(tx) = sender() {
        PENDING.fetch_add(objects, Ordering::Relaxed);
        if let Err(back) = tx.send((Box::new(value), objects)) {
            PENDING.fetch_sub(objects, Ordering::Relaxed);
            drop(back);
        }
    }
}

/// Values waiting for the background thread (INFO `lazyfree_pending_objects`).
pub(crate) fn pending() -> u64 {
    PENDING.load(Ordering::Relaxed)
}

/// Values the background thread freed (INFO `lazyfreed_objects`).
pub(crate) fn freed() -> u64 {
    FREED.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn big_values_go_to_the_thread() {
        let before = freed();
        free(vec![0u8; 10], 1);
        assert_eq!(freed(), before, "small: freed on the spot");
        free(vec![vec![0u8; 8]; 1000], 1000);
        for _ in 0..1000 {
            if freed() > before {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        panic!("the background thread freed nothing");
    }
}
