//! The caching device allocator: after two warm-up steps, a DCGAN step takes every buffer
//! from the free lists and allocates nothing from the driver. Counted on the emulator's
//! driver, which sees exactly the calls a GPU driver would. (One test in this binary: the
//! emulator backend and its counters are process-wide.)
//!
//! Two, not one: a request may take a cached block of up to 4× its size class, so the first
//! step, which starts from empty free lists, can leave the classes differently stocked than a
//! step that starts from its leftovers. Since the step keeps its reported numbers on the
//! device until its end, the second step asks the driver for one more 256-byte block (a
//! scalar); from then on every step is served from the free lists.

use dcgan::backend::emu;
use dcgan::gan::{DcganConfig, Gan};
use dcgan::{Device, Rng, Tensor};

#[test]
fn steps_after_warm_up_allocate_nothing_from_the_driver() {
    let dev = Device::Emu;
    let cfg = DcganConfig { image_size: 16, channels: 3, nz: 8, ngf: 4, ndf: 4, classes: 0 };
    let mut rng = Rng::new(1);
    let mut gan = Gan::dcgan(&cfg, &mut rng, dev);
    let real = Tensor::rand_uniform(&[4, 3, 16, 16], -1.0, 1.0, &mut rng, dev);
    let z = Tensor::randn(&[4, cfg.nz, 1, 1], 0.0, 1.0, &mut rng, dev);

    let driver = emu::backend().driver();
    gan.step(&real, &z);
    gan.step(&real, &z);
    let after_first = driver.alloc_count();
    let stats_first = emu::backend().alloc_stats();
    assert!(after_first > 0);
    for step in 3..=6 {
        gan.step(&real, &z);
        assert_eq!(driver.alloc_count(), after_first, "step {step} allocated from the driver");
    }
    let stats = emu::backend().alloc_stats();
    assert_eq!(stats.driver_allocs, stats_first.driver_allocs);
    assert!(stats.reused > stats_first.reused, "steps 3..6 reused cached blocks: {stats:?}");
    assert_eq!(stats.bytes_reserved, stats_first.bytes_reserved);
}
