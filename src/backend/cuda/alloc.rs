//! The caching device allocator. Buffers are rounded up to a size class (powers of two from
//! 256 bytes); a dropped buffer goes back to its class's free list instead of the driver
//! (a request whose class is empty may take a cached block of the next two classes), so
//! once a training step has run, the next step's buffers all come from the free lists and
//! the driver is not called at all (tests/emu_alloc.rs counts the driver calls).

use super::driver::{DevPtr, GpuDriver};
use crate::backend::Device;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub const MIN_CLASS: usize = 256;

/// The size class of a request in bytes.
pub fn size_class(bytes: usize) -> usize {
    bytes.max(MIN_CLASS).next_power_of_two()
}

/// Counters of one allocator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocStats {
    /// Allocations that reached the driver (free list empty).
    pub driver_allocs: usize,
    /// Allocations served from a free list.
    pub reused: usize,
    /// Bytes held by the allocator: live buffers plus free lists.
    pub bytes_reserved: usize,
}

#[derive(Default)]
pub struct Pool {
    free: Mutex<HashMap<usize, Vec<DevPtr>>>,
    driver_allocs: AtomicUsize,
    reused: AtomicUsize,
    bytes_reserved: AtomicUsize,
}

impl Pool {
    pub fn stats(&self) -> AllocStats {
        AllocStats {
            driver_allocs: self.driver_allocs.load(Ordering::Relaxed),
            reused: self.reused.load(Ordering::Relaxed),
            bytes_reserved: self.bytes_reserved.load(Ordering::Relaxed),
        }
    }

    /// A buffer of `len` f32 from the free list of its class, or from the driver.
    pub fn alloc<D: GpuDriver>(self: &Arc<Self>, driver: &D, len: usize) -> GpuBuffer {
        let want = size_class(len * 4);
        // The request's own class first, else a cached block up to 4x larger: the live set of
        // a step shifts a little between steps (gradients outlive the step that made them),
        // and a slightly larger block beats a driver call.
        let cached = {
            let mut free = self.free.lock().unwrap();
            [want, want * 2, want * 4]
                .into_iter()
                .find_map(|c| free.get_mut(&c).and_then(Vec::pop).map(|p| (p, c)))
        };
        let (ptr, class) = match cached {
            Some(hit) => {
                self.reused.fetch_add(1, Ordering::Relaxed);
                hit
            }
            None => {
                self.driver_allocs.fetch_add(1, Ordering::Relaxed);
                self.bytes_reserved.fetch_add(want, Ordering::Relaxed);
                let p = driver.alloc(want).unwrap_or_else(|e| {
                    panic!("{}: device allocation of {want} bytes failed: {e}", driver.device())
                });
                (p, want)
            }
        };
        GpuBuffer { ptr, len, class, device: driver.device(), pool: self.clone() }
    }

    /// Hands every cached block back to the driver.
    pub fn trim<D: GpuDriver>(&self, driver: &D) {
        let mut free = self.free.lock().unwrap();
        for (class, ptrs) in free.drain() {
            for p in ptrs {
                // SAFETY: cached blocks are not referenced by any buffer.
                unsafe { driver.free(p, class) };
                self.bytes_reserved.fetch_sub(class, Ordering::Relaxed);
            }
        }
    }
}

/// A flat f32 buffer in device memory. Dropping it returns the block to its pool. Kernels
/// are ordered on one stream, so a block freed here can be reused by the next launch safely.
pub struct GpuBuffer {
    ptr: DevPtr,
    len: usize,
    class: usize,
    device: Device,
    pool: Arc<Pool>,
}

impl GpuBuffer {
    pub fn ptr(&self) -> DevPtr {
        self.ptr
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn device(&self) -> Device {
        self.device
    }
    /// Bytes actually reserved (the size class).
    pub fn capacity_bytes(&self) -> usize {
        self.class
    }
}

impl Drop for GpuBuffer {
    fn drop(&mut self) {
        if let Ok(mut free) = self.pool.free.lock() {
            free.entry(self.class).or_default().push(self.ptr);
        }
    }
}

impl std::fmt::Debug for GpuBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GpuBuffer({}, {:#x}, {} f32)", self.device, self.ptr.0, self.len)
    }
}
