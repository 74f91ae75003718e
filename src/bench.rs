//! `dcgan bench`: time whole DCGAN training steps (one D update on real + detached fake,
//! one G update) on random data, and say where the time goes.

use crate::backend::cpu::MatmulPrecision;
use crate::backend::{Device, profile};
use crate::gan::models::{generator_input, one_hot};
use crate::gan::{
    ClassLabels, DcganConfig, DiffAugment, DiffAugmentPolicy, Gan, GanLoss, InstanceNoise,
    spectral_norm_discriminator,
};
use crate::nn::Module;
use crate::optim::Adam;
use crate::rng::Rng;
use crate::tensor::Tensor;
use serde::Serialize;
use std::time::Instant;

pub struct BenchOptions {
    pub model: DcganConfig,
    pub batch_size: usize,
    pub steps: usize,
    pub warmup: usize,
    pub device: Device,
    /// Peak GFLOP/s to compare with; None: measure this machine's with the engine's gemm.
    pub peak_gflops: Option<f64>,
    /// The game's losses (`train --loss`).
    pub loss: GanLoss,
    /// D as `train --spectral-norm` builds it.
    pub spectral_norm: bool,
    /// Instance noise of this σ on D's inputs, held constant (`train --instance-noise`).
    pub instance_noise: Option<f32>,
    /// DiffAugment on D's inputs (`train --diffaugment`).
    pub diffaugment: Option<DiffAugmentPolicy>,
    /// The convolutions' products (`train --matmul`).
    pub matmul: MatmulPrecision,
}

#[derive(Serialize, Debug)]
pub struct Breakdown {
    pub kernel: String,
    pub ms_per_step: f64,
    pub share: f64,
    pub calls_per_step: f64,
    pub gflops: Option<f64>,
}

/// One convolution geometry in one direction. A ConvTranspose2d layer appears as its mirror
/// convolution (its forward is that convolution's backward-data, and so on).
#[derive(Serialize, Debug)]
pub struct ConvLayerTime {
    pub direction: String,
    /// "c_in→c_out h_in×w_in→h_out×w_out k s p", e.g. "3→64 64×64→32×32 k4 s2 p1".
    pub layer: String,
    pub ms_per_step: f64,
    pub gflops: f64,
}

#[derive(Serialize, Debug)]
pub struct BenchReport {
    pub device: String,
    pub image_size: usize,
    pub channels: usize,
    pub batch_size: usize,
    pub nz: usize,
    pub ngf: usize,
    pub ndf: usize,
    /// The step's options: `--loss`, `--spectral-norm`, `--instance-noise` σ, `--conditional`,
    /// `--diffaugment`.
    pub loss: String,
    pub spectral_norm: bool,
    pub instance_noise: Option<f32>,
    /// The classes of a conditional step (`--conditional`), None for the unconditional one.
    pub conditional_classes: Option<usize>,
    /// The DiffAugment policy (`--diffaugment`), None without.
    pub diffaugment: Option<String>,
    /// The convolutions' products: "f32" or "bf16" (`--matmul`).
    pub matmul: String,
    pub threads: usize,
    pub steps: usize,
    pub ms_per_step_median: f64,
    pub ms_per_step_min: f64,
    pub images_per_s: f64,
    /// Convolution FLOPs of one step, as executed (D's weight gradients are skipped in the G
    /// step).
    pub conv_gflop_per_step: f64,
    /// Convolution FLOPs over the whole median step time.
    pub gflops: f64,
    /// Convolution FLOPs over the convolutions' own time (profiled steps): how fast the
    /// convolutions themselves run, the rest of the step aside.
    pub conv_only_gflops: f64,
    pub peak_gflops: f64,
    pub peak_measured: bool,
    /// How `peak_gflops` was found, e.g. "measured: engine gemm 2048³ on the CPU" or "--peak".
    pub peak_source: String,
    pub percent_of_peak: f64,
    /// The ceiling no kernel can pass, where `peak_gflops` is what the engine's gemm reaches:
    /// on the CPU (AVX2 or AVX-512) the cores' FMA loop, on a GPU its rated fp32 rate
    /// ([`measure_peaks`]).
    pub fma_peak_gflops: Option<f64>,
    /// Where `fma_peak_gflops` comes from.
    pub fma_peak_source: Option<String>,
    pub percent_of_fma_peak: Option<f64>,
    /// `conv_only_gflops` against `fma_peak_gflops`.
    pub conv_only_percent_of_fma_peak: Option<f64>,
    /// With `--matmul bf16` on the CPU: where its products run, "amx", "avx512-bf16" or
    /// "widened" (`amx::Bf16Path`).
    pub bf16_path: Option<String>,
    /// With `--matmul bf16` on AMX: the tile units' bf16 multiply rate on every thread
    /// (`amx::tile_peak_gflops`), and the convolutions against it, over the step and over
    /// their own time.
    pub bf16_tile_peak_gflops: Option<f64>,
    pub percent_of_bf16_tile_peak: Option<f64>,
    pub conv_only_percent_of_bf16_tile_peak: Option<f64>,
    /// What the tile gemm itself reaches on every thread (`amx::tile_gemm_gflops`): the
    /// ceiling of the convolutions' products, below the tiles' own rate.
    pub bf16_tile_gemm_gflops: Option<f64>,
    pub peak_rss_mib: f64,
    /// On a GPU device: the device memory the engine's allocator holds after the run (its
    /// peak; the driver's own context comes on top). None on the CPU.
    pub device_memory_mib: Option<f64>,
    pub breakdown: Vec<Breakdown>,
    /// Every convolution of the step, slowest first.
    pub conv_layers: Vec<ConvLayerTime>,
}

/// Peak resident set size of this process so far (Linux: VmHWM), in MiB.
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Both peaks of `dev` with where each comes from: what the engine's own gemm reaches
/// (`given` replaces it, from `--peak`), and the ceiling no kernel can pass: on the CPU (AVX2
/// or AVX-512) the FMA loop on every thread, on a GPU its multiprocessors × fp32 lanes × clock.
/// No ceiling for the emulator.
pub fn measure_peaks(dev: Device, given: Option<f64>) -> ((f64, String), Option<(f64, &'static str)>) {
    let given = given.map(|p| (p, "--peak".to_string()));
    match dev {
        Device::Cpu => {
            // The two alternate, best of each: a shared machine's speed drifts by several
            // percent over seconds, and the gemm's share of the FMA loop means something only
            // when both saw the same machine.
            let mut probe = given.is_none().then(CpuGemmProbe::new);
            let (mut gemm, mut fma) = (0.0f64, None::<f64>);
            for _ in 0..5 {
                if let Some(probe) = &mut probe {
                    gemm = gemm.max(probe.run());
                }
                fma = time_fma_loop().map(|f| fma.map_or(f, |best| best.max(f)));
            }
            (
                given.unwrap_or((gemm, CpuGemmProbe::source())),
                fma.map(|f| (f, "measured: FMA loop on every thread")),
            )
        }
        Device::Cuda(i) => (
            given.unwrap_or_else(|| measure_gemm_peak(dev)),
            crate::backend::cuda::real::fp32_peak_gflops(i)
                .map(|p| (p, "rated: multiprocessors × fp32 lanes × 2 × clock")),
        ),
        Device::Emu => (given.unwrap_or_else(|| measure_gemm_peak(dev)), None),
    }
}

/// The practical fp32 peak of `dev` as the engine's own gemm reaches it, and how it was
/// measured: on the CPU (and for the emulator, which runs there) 2048³ through the CPU gemm,
/// best of 5; on a GPU 4096³ through the device's matmul, best of 4 after a warm-up, each
/// timed between two synchronizations.
fn measure_gemm_peak(dev: Device) -> (f64, String) {
    if let Device::Cuda(_) = dev {
        let n = 4096;
        let be = dev.backend();
        let mut rng = Rng::new(1);
        let mut host = vec![0.0; n * n];
        rng.fill_uniform(&mut host, -1.0, 1.0);
        let a = be.upload(host.clone());
        rng.fill_uniform(&mut host, -1.0, 1.0);
        let b = be.upload(host);
        drop(be.matmul(&a, false, &b, false, n, n, n));
        let mut best = f64::INFINITY;
        for _ in 0..4 {
            be.synchronize();
            let t = Instant::now();
            let c = be.matmul(&a, false, &b, false, n, n, n);
            be.synchronize();
            best = best.min(t.elapsed().as_secs_f64());
            drop(c);
        }
        return (2.0 * (n * n * n) as f64 / best / 1e9, format!("measured: engine gemm {n}³ on {dev}"));
    }
    let mut probe = CpuGemmProbe::new();
    let best = (0..5).map(|_| probe.run()).fold(0.0, f64::max);
    (best, CpuGemmProbe::source())
}

/// One square product through the CPU gemm on all rayon threads, operands kept between runs.
struct CpuGemmProbe {
    a: Vec<f32>,
    b: Vec<f32>,
    c: Vec<f32>,
}

impl CpuGemmProbe {
    const N: usize = 2048;

    /// How the peak it gives was found, for the report.
    fn source() -> String {
        format!("measured: engine gemm {}³ on the CPU", Self::N)
    }

    fn new() -> Self {
        let n = Self::N;
        let mut rng = Rng::new(1);
        let (mut a, mut b) = (vec![0.0; n * n], vec![0.0; n * n]);
        rng.fill_uniform(&mut a, -1.0, 1.0);
        rng.fill_uniform(&mut b, -1.0, 1.0);
        CpuGemmProbe { a, b, c: vec![0.0; n * n] }
    }

    /// GFLOP/s of one run.
    fn run(&mut self) -> f64 {
        use crate::backend::cpu::gemm::{MatRef, sgemm};
        let n = Self::N;
        let t = Instant::now();
        sgemm(
            n,
            n,
            n,
            1.0,
            MatRef::row_major(&self.a, n),
            MatRef::row_major(&self.b, n),
            0.0,
            &mut self.c,
            n,
        );
        2.0 * (n * n * n) as f64 / t.elapsed().as_secs_f64() / 1e9
    }
}

/// One timing of the FMA loop on every rayon thread, in GFLOP/s (about 50 ms).
fn time_fma_loop() -> Option<f64> {
    #[cfg(target_arch = "x86_64")]
    {
        // FLOPs per iteration of the 12 chains: lanes · 2 (multiply and add) · 12.
        let (chains, flops_per_iter): (unsafe fn(u64) -> f32, f64) = if is_x86_feature_detected!("avx512f") {
            (fma_chains::avx512, 16.0 * 2.0 * 12.0)
        } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            (fma_chains::avx2, 8.0 * 2.0 * 12.0)
        } else {
            return None;
        };
        const ITERS: u64 = 25_000_000; // about 50 ms per thread at 200 GFLOP/s
        let threads = rayon::current_num_threads();
        let t = Instant::now();
        // SAFETY: the features `chains` needs were detected above.
        let sums = rayon::broadcast(|_| unsafe { chains(ITERS) });
        let secs = t.elapsed().as_secs_f64();
        std::hint::black_box(sums);
        Some(flops_per_iter * ITERS as f64 * threads as f64 / secs / 1e9)
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

#[cfg(target_arch = "x86_64")]
mod fma_chains {
    use std::arch::x86_64::*;

    /// 12 chains: enough to cover the FMA latency (4) on two ports with room to spare.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn avx512(iters: u64) -> f32 {
        let (b, c) = (_mm512_set1_ps(1.000_000_1), _mm512_set1_ps(1e-7));
        let mut acc = [_mm512_set1_ps(1.0); 12];
        for _ in 0..iters {
            for a in &mut acc {
                *a = _mm512_fmadd_ps(*a, b, c);
            }
        }
        acc.iter().map(|&a| _mm512_reduce_add_ps(a)).sum()
    }

    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn avx2(iters: u64) -> f32 {
        let (b, c) = (_mm256_set1_ps(1.000_000_1), _mm256_set1_ps(1e-7));
        let mut acc = [_mm256_set1_ps(1.0); 12];
        for _ in 0..iters {
            for a in &mut acc {
                *a = _mm256_fmadd_ps(*a, b, c);
            }
        }
        let mut lanes = [0.0f32; 8];
        acc.iter()
            .map(|&a| {
                unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), a) };
                lanes.iter().sum::<f32>()
            })
            .sum()
    }
}

pub fn run(opts: &BenchOptions) -> BenchReport {
    let _precision = crate::backend::cpu::MatmulPrecisionScope::new(opts.matmul);
    let cfg = opts.model;
    let dev = opts.device;
    let mut rng = Rng::new(0);
    let mut gan = Gan::dcgan(&cfg, &mut rng, dev);
    gan.loss = opts.loss;
    if opts.spectral_norm {
        gan.discriminator = spectral_norm_discriminator(&cfg, &mut rng, dev);
        gan.opt_d = Adam::new(gan.discriminator.parameters(), 2e-4, (0.5, 0.999));
    }
    // Never annealed: every timed step pays for the noise.
    gan.instance_noise =
        opts.instance_noise.map(|sigma| InstanceNoise { sigma, anneal_steps: u64::MAX, seed: 0 });
    gan.diff_augment = opts.diffaugment.map(|policy| DiffAugment { seed: 0, policy });
    let real = Tensor::rand_uniform(
        &[opts.batch_size, cfg.channels, cfg.image_size, cfg.image_size],
        -1.0,
        1.0,
        &mut rng,
        dev,
    );
    let mut z = vec![0.0; opts.batch_size * cfg.nz];
    rng.fill_normal(&mut z, 0.0, 1.0);
    // A conditional step's classes spread evenly over the batch, real and fake alike.
    let labels: Vec<u8> = match cfg.classes {
        0 => Vec::new(),
        classes => (0..opts.batch_size).map(|i| (i % classes) as u8).collect(),
    };
    let z = [generator_input(z, cfg.nz, &labels, cfg.classes, dev)];
    let labels: Vec<ClassLabels> = if cfg.classes > 0 {
        let y = one_hot(&labels, cfg.classes, dev);
        vec![ClassLabels { real: y.clone(), fake: y }]
    } else {
        Vec::new()
    };
    let real = [real];
    let step = |gan: &mut Gan| gan.step_with(&real, &z, &labels, false);

    let be = dev.backend();
    for _ in 0..opts.warmup {
        step(&mut gan);
    }
    let mut times = Vec::with_capacity(opts.steps);
    for _ in 0..opts.steps {
        be.synchronize();
        let t = Instant::now();
        step(&mut gan);
        be.synchronize();
        times.push(t.elapsed().as_secs_f64());
    }
    // A separate profiled pass, so the timed steps carry no bookkeeping.
    let profiled_steps = opts.steps.clamp(1, 3);
    profile::enable(true);
    let _ = profile::take();
    let _ = profile::take_conv_layers();
    for _ in 0..profiled_steps {
        step(&mut gan);
    }
    profile::enable(false);
    let table = profile::take();
    let mut conv_layers: Vec<ConvLayerTime> = profile::take_conv_layers()
        .into_iter()
        .map(|l| {
            let g = l.geom;
            ConvLayerTime {
                direction: l.direction.to_string(),
                layer: format!(
                    "{}→{} {}×{}→{}×{} k{} s{} p{}",
                    g.c_in, g.c_out, g.h_in, g.w_in, g.h_out, g.w_out, g.kh, g.stride, g.pad
                ),
                ms_per_step: l.entry.seconds / profiled_steps as f64 * 1e3,
                gflops: l.entry.flops / l.entry.seconds.max(1e-12) / 1e9,
            }
        })
        .collect();
    conv_layers.sort_by(|a, b| b.ms_per_step.total_cmp(&a.ms_per_step));

    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let min = times[0];
    let per_step = |v: f64| v / profiled_steps as f64;
    let total_profiled: f64 = table.iter().map(|(_, e)| e.seconds).sum();
    let conv_flops: f64 =
        table.iter().filter(|(k, _)| k.starts_with("conv")).map(|(_, e)| per_step(e.flops)).sum();
    let breakdown = table
        .iter()
        .filter(|(_, e)| e.calls > 0)
        .map(|(k, e)| Breakdown {
            kernel: k.to_string(),
            ms_per_step: per_step(e.seconds) * 1e3,
            share: if total_profiled > 0.0 { e.seconds / total_profiled } else { 0.0 },
            calls_per_step: per_step(e.calls as f64),
            gflops: (e.flops > 0.0).then(|| e.flops / e.seconds / 1e9),
        })
        .collect();
    // Read before the peak's own gemm takes its buffers from the same allocator.
    let device_memory_mib = dev.device_memory_reserved().map(|b| b as f64 / (1024.0 * 1024.0));
    let ((peak, peak_source), fma_peak) = measure_peaks(dev, opts.peak_gflops);
    let bf16_on_cpu = dev == Device::Cpu && opts.matmul == MatmulPrecision::Bf16;
    let tile_peak = bf16_on_cpu.then(|| crate::backend::cpu::amx::tile_peak_gflops(5)).flatten();
    let tile_gemm = bf16_on_cpu.then(|| crate::backend::cpu::amx::tile_gemm_gflops(5)).flatten();
    let gflops = conv_flops / median / 1e9;
    let conv_seconds: f64 =
        table.iter().filter(|(k, _)| k.starts_with("conv")).map(|(_, e)| per_step(e.seconds)).sum();
    let conv_only_gflops = conv_flops / conv_seconds.max(1e-12) / 1e9;
    BenchReport {
        device: dev.to_string(),
        image_size: cfg.image_size,
        channels: cfg.channels,
        batch_size: opts.batch_size,
        loss: opts.loss.name().to_string(),
        spectral_norm: opts.spectral_norm,
        instance_noise: opts.instance_noise,
        conditional_classes: (cfg.classes > 0).then_some(cfg.classes),
        diffaugment: opts.diffaugment.map(|p| p.to_string()),
        matmul: opts.matmul.name().to_string(),
        nz: cfg.nz,
        ngf: cfg.ngf,
        ndf: cfg.ndf,
        threads: rayon::current_num_threads(),
        steps: opts.steps,
        ms_per_step_median: median * 1e3,
        ms_per_step_min: min * 1e3,
        images_per_s: opts.batch_size as f64 / median,
        conv_gflop_per_step: conv_flops / 1e9,
        gflops,
        conv_only_gflops,
        peak_gflops: peak,
        peak_measured: opts.peak_gflops.is_none(),
        peak_source,
        percent_of_peak: 100.0 * gflops / peak,
        fma_peak_gflops: fma_peak.map(|(p, _)| p),
        fma_peak_source: fma_peak.map(|(_, s)| s.to_string()),
        percent_of_fma_peak: fma_peak.map(|(p, _)| 100.0 * gflops / p),
        conv_only_percent_of_fma_peak: fma_peak.map(|(p, _)| 100.0 * conv_only_gflops / p),
        bf16_path: bf16_on_cpu.then(|| crate::backend::cpu::amx::path().name().to_string()),
        bf16_tile_peak_gflops: tile_peak,
        percent_of_bf16_tile_peak: tile_peak.map(|p| 100.0 * gflops / p),
        conv_only_percent_of_bf16_tile_peak: tile_peak.map(|p| 100.0 * conv_only_gflops / p),
        bf16_tile_gemm_gflops: tile_gemm,
        peak_rss_mib: peak_rss_mib(),
        device_memory_mib,
        breakdown,
        conv_layers,
    }
}

pub fn render_text(r: &BenchReport) -> String {
    let mut options = vec![format!("{} loss", r.loss)];
    if r.spectral_norm {
        options.push("spectral norm".to_string());
    }
    if let Some(sigma) = r.instance_noise {
        options.push(format!("instance noise σ {sigma}"));
    }
    if let Some(classes) = r.conditional_classes {
        options.push(format!("conditional, {classes} classes"));
    }
    if let Some(policy) = &r.diffaugment {
        options.push(format!("DiffAugment {policy}"));
    }
    if r.matmul != "f32" {
        options.push(format!("{} convolution products", r.matmul));
    }
    let mut s = format!(
        "DCGAN-{} {}ch batch {} (nz {}, ngf {}, ndf {}; {}) on {} with {} threads, {} steps\n",
        r.image_size,
        r.channels,
        r.batch_size,
        r.nz,
        r.ngf,
        r.ndf,
        options.join(", "),
        r.device,
        r.threads,
        r.steps
    );
    s += &format!(
        "  {:.1} ms/step median (min {:.1}), {:.1} img/s\n  convolutions: {:.2} GFLOP/step, {:.1} GFLOP/s = {:.1}% of {:.0} GFLOP/s peak ({})\n",
        r.ms_per_step_median,
        r.ms_per_step_min,
        r.images_per_s,
        r.conv_gflop_per_step,
        r.gflops,
        r.percent_of_peak,
        r.peak_gflops,
        r.peak_source,
    );
    if let (Some(fma), Some(pct), Some(src)) = (r.fma_peak_gflops, r.percent_of_fma_peak, &r.fma_peak_source)
    {
        s += &format!("                = {pct:.1}% of {fma:.0} GFLOP/s ({src})\n");
    }
    s += &format!(
        "  convolutions alone (their own time): {:.1} GFLOP/s = {:.1}% of the {:.0} peak",
        r.conv_only_gflops,
        100.0 * r.conv_only_gflops / r.peak_gflops,
        r.peak_gflops
    );
    if let Some(pct) = r.conv_only_percent_of_fma_peak {
        s += &format!(", {pct:.1}% of the fp32 ceiling");
    }
    s += "\n";
    if let (true, Some(fma)) = (r.peak_measured, r.fma_peak_gflops) {
        s += &format!(
            "  engine gemm: {:.0} GFLOP/s = {:.1}% of the fp32 ceiling\n",
            r.peak_gflops,
            100.0 * r.peak_gflops / fma
        );
    }
    if let (Some(tile), Some(pct), Some(own)) =
        (r.bf16_tile_peak_gflops, r.percent_of_bf16_tile_peak, r.conv_only_percent_of_bf16_tile_peak)
    {
        s += &format!(
            "  bf16 products on the AMX tiles (the f32 peaks above do not bound them): {pct:.1}% of \
             {tile:.0} GFLOP/s (measured: tile multiply loop on every thread), {own:.1}% in the \
             convolutions' own time\n"
        );
        if let Some(gemm) = r.bf16_tile_gemm_gflops {
            s += &format!(
                "  tile gemm: {gemm:.0} GFLOP/s = {:.1}% of the tiles' rate (measured: 256×1024 · 1024×256 \
                 on every thread, packed, in L2)\n",
                100.0 * gemm / tile
            );
        }
    } else if r.matmul == "bf16" {
        s += &format!("  bf16 products {}\n", crate::backend::cpu::amx::path().describe());
    }
    s += &format!("  peak RSS {:.0} MiB", r.peak_rss_mib);
    if let Some(mib) = r.device_memory_mib {
        s += &format!(", device memory held by the engine {mib:.0} MiB");
    }
    s += "\n";
    s += "  breakdown (profiled steps):\n";
    for b in &r.breakdown {
        s += &format!(
            "    {:<22} {:>9.2} ms {:>5.1}%  {:>6.0} calls{}\n",
            b.kernel,
            b.ms_per_step,
            100.0 * b.share,
            b.calls_per_step,
            b.gflops.map(|g| format!("  {g:.1} GFLOP/s")).unwrap_or_default()
        );
    }
    s += "  convolutions by layer, slowest first (a ConvTranspose2d shows as its mirror conv):\n";
    for l in &r.conv_layers {
        s += &format!(
            "    {:<22} {:<30} {:>9.2} ms  {:>6.1} GFLOP/s\n",
            l.direction, l.layer, l.ms_per_step, l.gflops
        );
    }
    s
}
