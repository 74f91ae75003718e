//! Reuse of freed CPU buffers. A training step asks for the same buffer sizes every time, so
//! an op's output is taken from the buffers the previous step freed instead of fresh pages
//! from the OS. Page faults and the kernel's zeroing of fresh pages cost about a tenth of a
//! 32×32 step's CPU time before this pool.
//!
//! Memory: the pool never holds more than the most the process ever had in use through it.
//! When a request finds no idle buffer of its size and must allocate, idle buffers are freed
//! first until idle + in use + the new one fits that budget, so pooling does not raise the
//! peak RSS.
//!
//! A buffer from [`take`] has unspecified (stale) contents: every kernel that uses it writes
//! each element before reading it. To keep that promise honest, debug builds (and any build
//! after [`set_poison`]) fill reused buffers with NaN, so a kernel that read stale memory
//! would poison its result and fail the tests (tests/buffer_pool.rs).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// A request may take an idle buffer up to this many times its size class. Serving only the
/// exact class left a 32×32 step allocating about 40 MB afresh, and page-faulting it in
/// (10k faults, a tenth of the step), while tens of MB of other classes sat idle. Twice
/// brings that to a third; four times to a sixth but lifts the 64×64 batch-128 peak RSS by
/// another 45 MiB (the budget below counts a buffer's whole capacity as in use).
const MAX_FIT: usize = 2;

/// Buffers below this many floats go straight back to the allocator: its small-object heap
/// already reuses them without page faults.
const MIN_POOLED: usize = 1 << 12;

/// Idle buffers by capacity. Every pooled buffer's capacity is a size class (eight per
/// octave, see [`size_class`]) and a request takes the smallest idle buffer of its class or
/// up to [`MAX_FIT`] times it.
///
/// Two generations: buffers given back since the last [`trim`] (`fresh`) and those idle since
/// before it (`stale`). `trim` frees the stale ones, so a buffer that sat unused through a
/// whole training step is returned to the OS.
struct Pool {
    fresh: BTreeMap<usize, Vec<Vec<f32>>>,
    stale: BTreeMap<usize, Vec<Vec<f32>>>,
    /// Floats in idle buffers.
    idle: usize,
    /// Capacity of each buffer handed out by `take` and not yet given back, by address: only
    /// those come back into the pool (a caller's own Vec is simply freed). A buffer from
    /// `take` that is dropped outside a `Storage` (a kernel called directly, in a bench) keeps
    /// its entry and so stays counted as in use: harmless, it only raises the budget.
    out: Option<HashMap<usize, usize>>,
    /// Floats in `out`.
    in_use: usize,
    /// The most `in_use` has been.
    high_water: usize,
}

fn pop(generation: &mut BTreeMap<usize, Vec<Vec<f32>>>, cap: usize) -> Vec<f32> {
    let list = generation.get_mut(&cap).expect("capacity present");
    let v = list.pop().expect("empty lists are removed");
    if list.is_empty() {
        generation.remove(&cap);
    }
    v
}

impl Pool {
    fn reuse(&mut self, len: usize) -> Option<Vec<f32>> {
        let class = size_class(len);
        let fits = class..=class * MAX_FIT;
        let smallest = |g: &BTreeMap<usize, Vec<Vec<f32>>>| g.range(fits.clone()).next().map(|(&cap, _)| cap);
        let (generation, cap) = match (smallest(&self.fresh), smallest(&self.stale)) {
            (Some(f), Some(s)) if s < f => (&mut self.stale, s),
            (Some(f), _) => (&mut self.fresh, f),
            (None, Some(s)) => (&mut self.stale, s),
            (None, None) => return None,
        };
        let v = pop(generation, cap);
        self.idle -= cap;
        self.lend(&v);
        Some(v)
    }

    fn lend(&mut self, v: &[f32]) {
        self.out.get_or_insert_with(HashMap::new).insert(v.as_ptr() as usize, v.len());
        self.in_use += v.len();
        self.high_water = self.high_water.max(self.in_use);
    }

    /// Makes room for a fresh buffer of `len`: frees idle buffers, stale and largest first,
    /// while the total would pass the high-water mark. The price: a step's buffers of each
    /// size class peak at different moments, so serving every request from the pool would
    /// take more than the most ever in use at once, and some requests still allocate (about 9
    /// of 70 per step in tests/alloc_step.rs, 19 before [`MAX_FIT`]; 5 to 8 at the DCGAN's
    /// real sizes). Allowing more memory than the high-water mark instead costs RSS at 64×64:
    /// a quarter more, 80 MiB.
    fn evict_for(&mut self, len: usize) {
        while self.idle > 0 && self.idle + self.in_use + len > self.high_water {
            let generation = if self.stale.is_empty() { &mut self.fresh } else { &mut self.stale };
            let cap = *generation.keys().next_back().expect("idle > 0 means a buffer");
            drop(pop(generation, cap));
            self.idle -= cap;
        }
    }
}

/// `len` rounded up to a multiple of 2^(⌊log2 len⌋ − 3): eight classes per octave.
fn size_class(len: usize) -> usize {
    let unit = (1usize << (usize::BITS - 1 - len.leading_zeros())).div_ceil(8).max(1);
    len.div_ceil(unit) * unit
}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    fresh: BTreeMap::new(),
    stale: BTreeMap::new(),
    idle: 0,
    out: None,
    in_use: 0,
    high_water: 0,
});
static POISON: AtomicBool = AtomicBool::new(cfg!(debug_assertions));

fn pool() -> std::sync::MutexGuard<'static, Pool> {
    POOL.lock().expect("cpu buffer pool")
}

/// Fill reused buffers with NaN (on by default in debug builds).
pub fn set_poison(on: bool) {
    POISON.store(on, Ordering::SeqCst);
}

/// A buffer of exactly `len` floats with unspecified contents: a reused one when the pool has
/// one that fits, else a fresh zeroed one.
pub fn take(len: usize) -> Vec<f32> {
    if len < MIN_POOLED {
        return vec![0.0; len];
    }
    let mut p = pool();
    if let Some(mut v) = p.reuse(len) {
        drop(p);
        v.truncate(len);
        if POISON.load(Ordering::Relaxed) {
            v.fill(f32::NAN);
        }
        return v;
    }
    let cap = size_class(len);
    p.evict_for(cap);
    let mut v = vec![0.0; cap];
    advise_huge_pages(&v);
    p.lend(&v);
    drop(p);
    v.truncate(len);
    v
}

/// A buffer of `len` zeros.
pub fn zeros(len: usize) -> Vec<f32> {
    let mut v = take(len);
    v.fill(0.0);
    v
}

/// Hands a buffer back for reuse (called when a CPU `Storage` is dropped).
pub fn give(mut v: Vec<f32>) {
    if v.capacity() < MIN_POOLED {
        return;
    }
    let mut p = pool();
    let Some(cap) = p.out.as_mut().and_then(|out| out.remove(&(v.as_ptr() as usize))) else {
        return; // not from `take`: a caller's own Vec
    };
    // Whole again: the capacity was all written when the buffer was made.
    debug_assert_eq!(cap, v.capacity());
    // SAFETY: `take` made this buffer with `cap` initialised floats (vec![0.0; cap]) and only
    // truncated it; truncating f32s leaves the memory initialised.
    unsafe { v.set_len(cap) };
    p.in_use -= cap;
    p.idle += cap;
    p.fresh.entry(cap).or_default().push(v);
}

/// Frees the buffers that stayed idle since the previous call. The trainer calls it after
/// every step: what a step uses is taken and given back within it.
pub fn trim() {
    let stale = {
        let mut p = pool();
        let fresh = std::mem::take(&mut p.fresh);
        let stale = std::mem::replace(&mut p.stale, fresh);
        p.idle -= stale.iter().map(|(cap, list)| cap * list.len()).sum::<usize>();
        stale
    };
    drop(stale);
}

/// Frees every idle buffer (before a checkpoint, say, whose host copies would otherwise sit
/// on top of them).
pub fn release() {
    let (fresh, stale) = {
        let mut p = pool();
        p.idle = 0;
        (std::mem::take(&mut p.fresh), std::mem::take(&mut p.stale))
    };
    drop((fresh, stale));
}

/// Bytes held by idle buffers.
pub fn idle_bytes() -> usize {
    pool().idle * 4
}

/// Asks Linux to back a fresh buffer with 2 MiB pages where it can (the system's default
/// here is to do so only when asked: `transparent_hugepage/enabled` = madvise). The buffer
/// comes from its own zero-filled mapping and is not yet touched, so its first writes fault
/// in a 2 MiB page at a time instead of 4 KiB: a step re-allocates about 20 large buffers
/// (the pool keeps no more than the peak in use), each a fresh mapping.
fn advise_huge_pages(v: &[f32]) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let (start, end) = (v.as_ptr() as usize, v.as_ptr() as usize + v.len() * 4);
        let (lo, hi) = (start.next_multiple_of(HUGE), end / HUGE * HUGE);
        if hi > lo {
            unsafe extern "C" {
                fn madvise(addr: *mut std::ffi::c_void, len: usize, advice: i32) -> i32;
            }
            const MADV_HUGEPAGE: i32 = 14;
            // SAFETY: [lo, hi) lies inside the buffer's allocation; the advice changes only how
            // the kernel backs those pages, never their contents. Failure is harmless.
            unsafe { madvise(lo as *mut std::ffi::c_void, hi - lo, MADV_HUGEPAGE) };
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = v;
}

/// Makes glibc serve every allocation of 1 MiB or more with its own mapping, returned to the
/// OS when freed. By default glibc raises that threshold each time such a block is freed (up
/// to 32 MiB), after which activation-sized buffers come from its heap, which fragments and
/// is not given back: a 64×64 run then ends about 50 MiB above its true peak. The `dcgan`
/// binary calls this first thing; elsewhere it is a no-op.
pub fn pin_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        const M_MMAP_THRESHOLD: i32 = -3;
        // SAFETY: mallopt only changes allocator tuning; called before any threads exist.
        unsafe { mallopt(M_MMAP_THRESHOLD, 1 << 20) };
    }
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn size_classes_cover_the_request_and_waste_under_an_eighth() {
        for len in (1..5000).chain([65_535, 65_536, 65_537, 1 << 20, 3 << 20, (3 << 20) + 1]) {
            let c = size_class(len);
            assert!(c >= len && (c - len) * 8 <= len, "len {len} -> class {c}");
            assert_eq!(size_class(c), c, "a class is its own class ({len} -> {c})");
        }
        // The DCGAN's activation sizes are 2^k and 3·2^k: no waste at all.
        for k in 4..30 {
            assert_eq!(size_class(1 << k), 1 << k);
            assert_eq!(size_class(3 << k), 3 << k);
        }
    }
}
