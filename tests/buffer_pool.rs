//! The CPU buffer pool hands out buffers with stale contents; every kernel must write each
//! element before reading it. Poisoning reused buffers with NaN turns any violation into a
//! visibly different result.

use dcgan::backend::cpu::pool;
use dcgan::gan::{DcganConfig, Gan};
use dcgan::nn::Module;
use dcgan::{Device, Rng, Tensor};
use std::sync::{Mutex, MutexGuard};

/// The pool is one per process and the harness runs these tests on parallel threads: a
/// DCGAN step that must allocate evicts idle buffers, which can be another test's buffer
/// between its `give` and `take` (seen once in CI). Each test holds this lock throughout.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Three DCGAN steps from a fixed seed; the losses and every parameter's bits.
fn three_steps() -> (Vec<u32>, Vec<u32>) {
    let dev = Device::Cpu;
    let cfg = DcganConfig { image_size: 16, channels: 3, nz: 16, ngf: 8, ndf: 8, classes: 0 };
    let mut rng = Rng::new(11);
    let mut gan = Gan::dcgan(&cfg, &mut rng, dev);
    let real = Tensor::rand_uniform(&[8, 3, 16, 16], -1.0, 1.0, &mut rng, dev);
    let z = Tensor::randn(&[8, cfg.nz, 1, 1], 0.0, 1.0, &mut rng, dev);
    let mut losses = Vec::new();
    for _ in 0..3 {
        let m = gan.step(&real, &z);
        losses.extend([m.loss_d.to_bits(), m.loss_g.to_bits()]);
    }
    let params = gan
        .generator
        .parameters()
        .iter()
        .chain(gan.discriminator.parameters().iter())
        .flat_map(|p| p.to_vec())
        .map(f32::to_bits)
        .collect();
    (losses, params)
}

#[test]
fn reused_buffers_are_written_before_they_are_read() {
    let _serial = serial();
    // Run 1 fills the pool with buffers holding ordinary stale values; run 2 gets them back
    // poisoned with NaN. A kernel that read an output element before writing it would see
    // a finite value in one run and NaN in the other.
    pool::set_poison(false);
    let (losses_a, params_a) = three_steps();
    assert!(pool::idle_bytes() > 0, "the pool kept nothing to reuse");
    pool::set_poison(true);
    let (losses_b, params_b) = three_steps();
    pool::set_poison(cfg!(debug_assertions));
    assert!(losses_b.iter().all(|&b| f32::from_bits(b).is_finite()), "a loss is not finite: {losses_b:?}");
    assert_eq!(losses_a, losses_b, "losses differ with poisoned reused buffers");
    assert!(params_a == params_b, "parameters differ with poisoned reused buffers");
}

#[test]
fn a_freed_buffer_is_reused_for_the_same_length() {
    let _serial = serial();
    let len = 65_537; // a length no DCGAN op of the other test asks for
    let v = pool::take(len);
    let ptr = v.as_ptr();
    pool::give(v);
    let w = pool::take(len);
    assert_eq!(w.as_ptr(), ptr, "the pool allocated afresh instead of reusing");
    assert_eq!(w.len(), len);
    let z = pool::zeros(len);
    assert!(z.iter().all(|&x| x == 0.0));
}

#[test]
fn a_smaller_request_reuses_an_idle_buffer_up_to_twice_its_size() {
    let _serial = serial();
    // Lengths no other test here asks for (the pool is one per process).
    let big = pool::take(3 << 20);
    let ptr = big.as_ptr();
    pool::give(big);
    let half = pool::take((3 << 20) / 2);
    assert_eq!(half.as_ptr(), ptr, "a request half the idle buffer's size allocated afresh");
    assert_eq!(half.len(), (3 << 20) / 2);
    pool::give(half);
    let quarter = pool::take((3 << 20) / 4);
    assert_ne!(quarter.as_ptr(), ptr, "a request took a buffer four times its size");
    pool::give(quarter);
}
