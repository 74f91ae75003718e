//! A small seeded generator (xoshiro256++ seeded by SplitMix64).
//!
//! Everything random in the engine draws from it serially on the host, so the numbers depend
//! only on the seed and the order of draws — never on the thread count. The state is four
//! words, so a checkpoint can store it and a resumed run continues the same stream.

/// Values per independently seeded chunk of [`Rng::par_fill_normal`].
pub const PAR_NORMAL_CHUNK: usize = 1 << 14;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rng {
    s: [u64; 4],
}

fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        Rng { s: [splitmix64(&mut x), splitmix64(&mut x), splitmix64(&mut x), splitmix64(&mut x)] }
    }

    /// The raw state, for checkpoints.
    pub fn state(&self) -> [u64; 4] {
        self.s
    }

    pub fn from_state(s: [u64; 4]) -> Self {
        Rng { s }
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = (s[0].wrapping_add(s[3])).rotate_left(23).wrapping_add(s[0]);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn uniform_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        (lo as f64 + (hi as f64 - lo as f64) * self.uniform_f64()) as f32
    }

    /// Uniform integer in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "Rng::below(0)");
        // Lemire's multiply-shift; the bias for n << 2^64 is far below anything observable here.
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// Standard normal by Box–Muller (one draw per call; the pair's second half is discarded
    /// so that the state alone determines the stream).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform_f64(); // (0, 1]: log is finite
        let u2 = self.uniform_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    pub fn fill_normal(&mut self, out: &mut [f32], mean: f32, std: f32) {
        for v in out {
            *v = (mean as f64 + std as f64 * self.normal()) as f32;
        }
    }

    /// N(mean, std²) draws for a large buffer, filled in parallel: chunk c of
    /// [`PAR_NORMAL_CHUNK`] values comes from its own generator seeded by (seed, c), so the
    /// values depend on the seed alone, never on the thread count. Each Box–Muller pair gives
    /// both its halves, twice the draws per logarithm of [`Rng::fill_normal`] (whose stream
    /// existing seeds pin, so it keeps one draw per pair).
    pub fn par_fill_normal(seed: u64, out: &mut [f32], mean: f32, std: f32) {
        use rayon::prelude::*;
        out.par_chunks_mut(PAR_NORMAL_CHUNK).enumerate().for_each(|(c, chunk)| {
            let mut rng = Rng::new(seed ^ (c as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            for pair in chunk.chunks_mut(2) {
                let u1 = 1.0 - rng.uniform_f64();
                let (sin, cos) = (std::f64::consts::TAU * rng.uniform_f64()).sin_cos();
                let r = (-2.0 * u1.ln()).sqrt();
                for (v, z) in pair.iter_mut().zip([r * cos, r * sin]) {
                    *v = (mean as f64 + std as f64 * z) as f32;
                }
            }
        });
    }

    pub fn fill_uniform(&mut self, out: &mut [f32], lo: f32, hi: f32) {
        for v in out {
            *v = self.uniform(lo, hi);
        }
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            xs.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_moments_are_right() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let xs: Vec<f64> = (0..20000).map(|_| a.normal()).collect();
        let ys: Vec<f64> = (0..20000).map(|_| b.normal()).collect();
        assert_eq!(xs, ys);
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(mean.abs() < 0.03, "mean {mean}");
        assert!((var - 1.0).abs() < 0.05, "var {var}");
        assert_ne!(Rng::new(8).next_u64(), Rng::new(7).next_u64());
    }

    /// The parallel fill gives the same bits on one thread as on two, the moments of its
    /// N(mean, std²) in every chunk, and chunks that are not copies of each other.
    #[test]
    fn par_fill_normal_is_the_same_on_any_thread_count() {
        let fill = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut v = vec![0.0f32; 5 * PAR_NORMAL_CHUNK + 3];
            pool.install(|| Rng::par_fill_normal(11, &mut v, 0.5, 2.0));
            v
        };
        let v = fill(1);
        assert_eq!(v, fill(2));
        for chunk in v.chunks(PAR_NORMAL_CHUNK) {
            let n = chunk.len() as f64;
            let mean = chunk.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
            let var = chunk.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / n;
            if n > 1000.0 {
                assert!(
                    (mean - 0.5).abs() < 0.05 && (var.sqrt() - 2.0).abs() < 0.05,
                    "mean {mean}, var {var}"
                );
            }
        }
        assert_ne!(v[..64], v[PAR_NORMAL_CHUNK..PAR_NORMAL_CHUNK + 64]);
        let mut w = vec![0.0f32; 64];
        Rng::par_fill_normal(12, &mut w, 0.5, 2.0);
        assert_ne!(v[..64], w[..]);
    }

    #[test]
    fn state_round_trip_continues_the_stream() {
        let mut a = Rng::new(3);
        a.next_u64();
        let mut b = Rng::from_state(a.state());
        assert_eq!(a.next_u64(), b.next_u64());
    }
}
