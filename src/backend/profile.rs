//! Time per kernel family, for `dcgan bench`'s breakdown: a [`Backend`] that forwards every
//! call to the real one and adds its wall time (and a convolution's FLOPs) to a table.
//! Enabled per process with [`enable`]; when off, `Device::backend()` hands out the plain
//! backend and nothing is measured.

use super::{AdamParams, Backend, Binary, ChannelShape, ConvGeom, Device, Storage, Unary};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// The families the breakdown reports, in display order.
pub const CATEGORIES: &[&str] = &[
    "conv forward",
    "conv backward-data",
    "conv backward-weight",
    "batchnorm",
    "activations",
    "loss",
    "adam",
    "matmul",
    "augment",
    "device reads",
    "other",
];

static ENABLED: AtomicBool = AtomicBool::new(false);

#[derive(Clone, Debug, Default)]
pub struct Entry {
    pub seconds: f64,
    pub calls: u64,
    pub flops: f64,
}

impl Entry {
    fn count(&mut self, seconds: f64, flops: f64) {
        self.seconds += seconds;
        self.calls += 1;
        self.flops += flops;
    }
}

static TABLE: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

/// Per convolution call site: (direction, geometry) and its accumulated time and FLOPs, in
/// first-call order, so the breakdown can name the layer that is slow.
static CONV_LAYERS: Mutex<Vec<(usize, ConvGeom, Entry)>> = Mutex::new(Vec::new());

/// One convolution geometry in one direction, as [`take_conv_layers`] reports it.
#[derive(Clone, Debug)]
pub struct ConvLayer {
    /// "conv forward", "conv backward-data" or "conv backward-weight".
    pub direction: &'static str,
    pub geom: ConvGeom,
    pub entry: Entry,
}

pub fn enable(on: bool) {
    ENABLED.store(on, Ordering::SeqCst);
}

pub fn is_enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The accumulated table (one entry per [`CATEGORIES`] name), and clears it.
pub fn take() -> Vec<(&'static str, Entry)> {
    let mut t = TABLE.lock().expect("profile table");
    let entries = std::mem::take(&mut *t);
    CATEGORIES.iter().enumerate().map(|(i, &c)| (c, entries.get(i).cloned().unwrap_or_default())).collect()
}

/// The accumulated per-layer convolution times, and clears them.
pub fn take_conv_layers() -> Vec<ConvLayer> {
    let layers = std::mem::take(&mut *CONV_LAYERS.lock().expect("profile table"));
    layers.into_iter().map(|(c, geom, entry)| ConvLayer { direction: CATEGORIES[c], geom, entry }).collect()
}

fn add(category: usize, flops: f64, dt: f64) {
    let mut t = TABLE.lock().expect("profile table");
    if t.len() < CATEGORIES.len() {
        t.resize(CATEGORIES.len(), Entry::default());
    }
    t[category].count(dt, flops);
}

const CONV_FWD: usize = 0;
const CONV_BWD_DATA: usize = 1;
const CONV_BWD_WEIGHT: usize = 2;
const BATCHNORM: usize = 3;
const ACTIVATIONS: usize = 4;
const LOSS: usize = 5;
const ADAM: usize = 6;
const MATMUL: usize = 7;
const AUGMENT: usize = 8;
/// Downloads to the host: on a GPU each waits for the device to finish what was queued.
const READS: usize = 9;
const OTHER: usize = 10;

/// A device's backend with every call timed; [`profiled`] hands out one per device.
pub struct Profiled(&'static dyn Backend);

/// The profiled backend of `dev`, made on first use and kept for the process (a handful of
/// devices at most, so leaking one small wrapper each is fine).
pub fn profiled(dev: Device) -> &'static dyn Backend {
    static MADE: Mutex<Vec<(Device, &'static Profiled)>> = Mutex::new(Vec::new());
    let mut made = MADE.lock().expect("profiled backends");
    if let Some((_, p)) = made.iter().find(|(d, _)| *d == dev) {
        return *p;
    }
    let p: &'static Profiled = Box::leak(Box::new(Profiled(dev.unprofiled_backend())));
    made.push((dev, p));
    p
}

impl Profiled {
    /// Times `f` by the host clock, the device drained before and after it, so a GPU op's
    /// time is its kernels' (plus launch overhead), not the queue's.
    fn timed<T>(&self, f: impl FnOnce() -> T) -> (T, f64) {
        self.0.synchronize();
        let t0 = Instant::now();
        let r = f();
        self.0.synchronize();
        (r, t0.elapsed().as_secs_f64())
    }

    fn record<T>(&self, category: usize, flops: f64, f: impl FnOnce() -> T) -> T {
        let (r, dt) = self.timed(f);
        add(category, flops, dt);
        r
    }

    /// `record` for a convolution: also files the time under its geometry.
    fn record_conv<T>(&self, category: usize, g: &ConvGeom, f: impl FnOnce() -> T) -> T {
        let flops = 2.0 * g.macs() as f64;
        let (r, dt) = self.timed(f);
        add(category, flops, dt);
        let mut layers = CONV_LAYERS.lock().expect("profile table");
        let i = match layers.iter().position(|(c, lg, _)| *c == category && lg == g) {
            Some(i) => i,
            None => {
                layers.push((category, *g, Entry::default()));
                layers.len() - 1
            }
        };
        layers[i].2.count(dt, flops);
        r
    }
}

impl Backend for Profiled {
    fn zeros(&self, len: usize) -> Storage {
        self.record(OTHER, 0.0, || self.0.zeros(len))
    }
    fn upload(&self, data: Vec<f32>) -> Storage {
        self.record(OTHER, 0.0, || self.0.upload(data))
    }
    fn download(&self, s: &Storage) -> Vec<f32> {
        self.record(READS, 0.0, || self.0.download(s))
    }
    fn copy(&self, s: &Storage) -> Storage {
        self.record(OTHER, 0.0, || self.0.copy(s))
    }
    fn fill(&self, s: &mut Storage, value: f32) {
        self.record(OTHER, 0.0, || self.0.fill(s, value))
    }
    fn binary(&self, op: Binary, a: &Storage, b: &Storage) -> Storage {
        self.record(OTHER, 0.0, || self.0.binary(op, a, b))
    }
    fn affine(&self, x: &Storage, alpha: f32, beta: f32) -> Storage {
        self.record(OTHER, 0.0, || self.0.affine(x, alpha, beta))
    }
    fn axpby(&self, a: f32, x: &Storage, b: f32, y: &mut Storage) {
        self.record(OTHER, 0.0, || self.0.axpby(a, x, b, y))
    }
    fn unary(&self, op: Unary, x: &Storage) -> Storage {
        self.record(ACTIVATIONS, 0.0, || self.0.unary(op, x))
    }
    fn unary_backward(&self, op: Unary, saved: &Storage, dy: &Storage) -> Storage {
        self.record(ACTIVATIONS, 0.0, || self.0.unary_backward(op, saved, dy))
    }
    fn sum(&self, x: &Storage) -> Storage {
        self.record(OTHER, 0.0, || self.0.sum(x))
    }
    fn broadcast_scalar(&self, s: &Storage, scale: f32, len: usize) -> Storage {
        self.record(OTHER, 0.0, || self.0.broadcast_scalar(s, scale, len))
    }
    fn sum_channels(&self, x: &Storage, shape: ChannelShape) -> Storage {
        self.record(OTHER, 0.0, || self.0.sum_channels(x, shape))
    }
    fn add_channels(&self, x: &Storage, bias: &Storage, shape: ChannelShape) -> Storage {
        self.record(OTHER, 0.0, || self.0.add_channels(x, bias, shape))
    }
    fn translate_cutout(&self, x: &Storage, params: &Storage, shape: [usize; 4], backward: bool) -> Storage {
        self.record(AUGMENT, 0.0, || self.0.translate_cutout(x, params, shape, backward))
    }
    fn matmul(&self, a: &Storage, ta: bool, b: &Storage, tb: bool, m: usize, n: usize, k: usize) -> Storage {
        self.record(MATMUL, 2.0 * (m * n * k) as f64, || self.0.matmul(a, ta, b, tb, m, n, k))
    }
    fn conv2d_forward(&self, x: &Storage, w: &Storage, g: &ConvGeom) -> Storage {
        self.record_conv(CONV_FWD, g, || self.0.conv2d_forward(x, w, g))
    }
    fn conv2d_forward_act(&self, x: &Storage, w: &Storage, g: &ConvGeom, act: Unary) -> Storage {
        self.record_conv(CONV_FWD, g, || self.0.conv2d_forward_act(x, w, g, act))
    }
    fn conv2d_backward_data(&self, dy: &Storage, w: &Storage, g: &ConvGeom) -> Storage {
        self.record_conv(CONV_BWD_DATA, g, || self.0.conv2d_backward_data(dy, w, g))
    }
    fn conv2d_backward_weight(&self, x: &Storage, dy: &Storage, g: &ConvGeom) -> Storage {
        self.record_conv(CONV_BWD_WEIGHT, g, || self.0.conv2d_backward_weight(x, dy, g))
    }
    fn batchnorm2d_forward_train(
        &self,
        x: &Storage,
        gamma: &Storage,
        beta: &Storage,
        shape: ChannelShape,
        eps: f32,
    ) -> (Storage, Storage, Storage) {
        self.record(BATCHNORM, 0.0, || self.0.batchnorm2d_forward_train(x, gamma, beta, shape, eps))
    }
    fn batchnorm2d_forward_eval(
        &self,
        x: &Storage,
        gamma: &Storage,
        beta: &Storage,
        mean: &Storage,
        var: &Storage,
        shape: ChannelShape,
        eps: f32,
    ) -> Storage {
        self.record(BATCHNORM, 0.0, || self.0.batchnorm2d_forward_eval(x, gamma, beta, mean, var, shape, eps))
    }
    fn batchnorm2d_backward(
        &self,
        x: &Storage,
        dy: &Storage,
        gamma: &Storage,
        mean: &Storage,
        var: &Storage,
        shape: ChannelShape,
        eps: f32,
        batch_stats: bool,
    ) -> (Storage, Storage, Storage) {
        self.record(BATCHNORM, 0.0, || {
            self.0.batchnorm2d_backward(x, dy, gamma, mean, var, shape, eps, batch_stats)
        })
    }
    fn batchnorm2d_act_forward_train(
        &self,
        x: &Storage,
        gamma: &Storage,
        beta: &Storage,
        shape: ChannelShape,
        eps: f32,
        act: Unary,
    ) -> (Storage, Storage, Storage) {
        self.record(BATCHNORM, 0.0, || self.0.batchnorm2d_act_forward_train(x, gamma, beta, shape, eps, act))
    }
    fn batchnorm2d_act_forward_eval(
        &self,
        x: &Storage,
        gamma: &Storage,
        beta: &Storage,
        mean: &Storage,
        var: &Storage,
        shape: ChannelShape,
        eps: f32,
        act: Unary,
    ) -> Storage {
        self.record(BATCHNORM, 0.0, || {
            self.0.batchnorm2d_act_forward_eval(x, gamma, beta, mean, var, shape, eps, act)
        })
    }
    fn batchnorm2d_act_backward(
        &self,
        x: &Storage,
        dy: &Storage,
        gamma: &Storage,
        beta: &Storage,
        mean: &Storage,
        var: &Storage,
        shape: ChannelShape,
        eps: f32,
        batch_stats: bool,
        act: Unary,
    ) -> (Storage, Storage, Storage) {
        self.record(BATCHNORM, 0.0, || {
            self.0.batchnorm2d_act_backward(x, dy, gamma, beta, mean, var, shape, eps, batch_stats, act)
        })
    }
    fn bce_with_logits(&self, x: &Storage, target: &Storage) -> Storage {
        self.record(LOSS, 0.0, || self.0.bce_with_logits(x, target))
    }
    fn bce_with_logits_backward(&self, x: &Storage, target: &Storage, dloss: &Storage) -> Storage {
        self.record(LOSS, 0.0, || self.0.bce_with_logits_backward(x, target, dloss))
    }
    fn adam_step(&self, p: &mut Storage, grad: &Storage, m: &mut Storage, v: &mut Storage, hp: &AdamParams) {
        self.record(ADAM, 0.0, || self.0.adam_step(p, grad, m, v, hp))
    }
    fn sgd_step(
        &self,
        p: &mut Storage,
        grad: &Storage,
        buf: &mut Storage,
        lr: f32,
        momentum: f32,
        weight_decay: f32,
        first_step: bool,
    ) {
        self.record(ADAM, 0.0, || self.0.sgd_step(p, grad, buf, lr, momentum, weight_decay, first_step))
    }
    fn synchronize(&self) {
        self.0.synchronize()
    }
}
