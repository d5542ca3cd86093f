//! Memory accounting the eviction can trust: every heap allocation of the process is
//! counted, as Redis's `zmalloc` counts its own (`used_memory`).
//!
//! The engine installs [`Counting`] as the global allocator. It wraps the system
//! allocator and keeps one running total of the bytes the allocator really handed
//! out: the usable size of each block (glibc's `malloc_usable_size`, what Redis's
//! `zmalloc_size` reports with jemalloc), not the size asked for, so that per-block
//! rounding is in the figure. `maxmemory` is checked against this total, so a value
//! that grows, a client's buffers and the keyspace's own tables all count, without any
//! per-type estimate that could drift from the truth.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes currently allocated through the global allocator (usable sizes).
static USED: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, counted.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counting;

/// The size the allocator really reserved for a block of `layout` at `ptr`.
#[inline]
fn usable(ptr: *mut u8, layout: Layout) -> usize {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `ptr` is a live block that the system allocator (glibc's malloc,
        // memalign or realloc, which `System` calls on Linux) returned.
        let n = unsafe { libc::malloc_usable_size(ptr.cast()) };
        if n != 0 {
            return n;
        }
    }
    let _ = ptr;
    layout.size()
}

// SAFETY: every method forwards to `System` unchanged; the counter is bookkeeping only.
unsafe impl GlobalAlloc for Counting {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc(layout);
        if !p.is_null() {
            USED.fetch_add(usable(p, layout), Ordering::Relaxed);
        }
        p
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(layout);
        if !p.is_null() {
            USED.fetch_add(usable(p, layout), Ordering::Relaxed);
        }
        p
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        USED.fetch_sub(usable(ptr, layout), Ordering::Relaxed);
        System.dealloc(ptr, layout);
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let old = usable(ptr, layout);
        let p = System.realloc(ptr, layout, new_size);
        if !p.is_null() {
            // SAFETY (of the layout): `realloc`'s contract says `new_size` with the old
            // alignment is a valid layout.
            let new = usable(
                p,
                Layout::from_size_align_unchecked(new_size, layout.align()),
            );
            USED.fetch_add(new, Ordering::Relaxed);
            USED.fetch_sub(old, Ordering::Relaxed);
        }
        p
    }
}

/// Bytes allocated now (INFO `used_memory`), as Redis's `zmalloc_used_memory`.
#[inline]
pub fn used_memory() -> usize {
    USED.load(Ordering::Relaxed)
}

/// The process's resident set size in bytes (INFO `used_memory_rss`), read from
/// `/proc/self/statm` as Redis's `zmalloc_get_rss` does; 0 where there is no procfs.
pub fn rss() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * page_size())
}

fn page_size() -> usize {
    #[cfg(unix)]
    {
        // SAFETY: sysconf has no preconditions.
        let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if n > 0 {
            return n as usize;
        }
    }
    4096
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_are_counted_and_given_back() {
        // Other tests run in parallel threads and allocate too: look at a big block,
        // well above their noise, and allow for it.
        let before = used_memory();
        let v: Vec<u8> = vec![7; 64 << 20];
        let during = used_memory();
        // Half the block as margin: other tests may free (or allocate) meanwhile.
        assert!(during >= before + (32 << 20), "{before} -> {during}");
        drop(v);
        let after = used_memory();
        assert!(after + (32 << 20) <= during, "{during} -> {after}");
        assert!(rss() > 0);
    }
}
