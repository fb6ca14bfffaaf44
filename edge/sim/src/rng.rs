//! The simulator's only source of randomness: xoshiro256** seeded through splitmix64, one
//! independent stream per purpose. Never the operating system's entropy, never the clock: the
//! same seed gives the same run, byte for byte.

/// splitmix64: expands one 64-bit seed into well-mixed state words.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A stable 64-bit hash of a label (FNV-1a), to name streams.
fn label_hash(label: &str) -> u64 {
    label.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// xoshiro256**: fast, small, good enough for simulation (not for secrets).
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// The stream named `label` of run `seed`: streams with different labels are independent.
    pub fn stream(seed: u64, label: &str) -> Self {
        let mut state = seed ^ label_hash(label).rotate_left(17);
        let mut s = [0; 4];
        for word in &mut s {
            *word = splitmix64(&mut state);
        }
        // An all-zero state would stay zero; splitmix64 never gives four zeros, but be sure.
        if s == [0; 4] {
            s[0] = 1;
        }
        Self { s }
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in `0.0..1.0` (53 random bits).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `low..high`.
    pub fn between(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.unit()
    }

    /// Uniform in `0..n` (`n > 0`; 0 when `n` is 0). Lemire's multiply-shift, without the
    /// rejection step: the bias is below 2^-32 for the small `n` the simulator uses.
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() >> 32).wrapping_mul(n as u64) >> 32) as usize
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Exponentially distributed with mean `mean`.
    pub fn exponential(&mut self, mean: f64) -> f64 {
        // 1 - unit() is in (0, 1]: the logarithm is finite.
        -mean * (1.0 - self.unit()).ln()
    }

    /// A standard normal deviate (Box-Muller, one of the pair).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit();
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_and_label_give_the_same_stream_others_differ() {
        let draw = |seed, label| {
            let mut r = Rng::stream(seed, label);
            (0..4).map(|_| r.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(draw(7, "arrivals"), draw(7, "arrivals"));
        assert_ne!(draw(7, "arrivals"), draw(8, "arrivals"));
        assert_ne!(draw(7, "arrivals"), draw(7, "service"));
    }

    #[test]
    fn draws_stay_in_range_and_have_the_right_mean() {
        let mut r = Rng::stream(1, "test");
        let n = 200_000;
        let mut sum = 0.0;
        for _ in 0..n {
            let u = r.unit();
            assert!((0.0..1.0).contains(&u));
            assert!(r.below(5) < 5);
            sum += r.exponential(2.0);
        }
        let mean = sum / n as f64;
        assert!((mean - 2.0).abs() < 0.03, "{mean}");
        let normal_mean = (0..n).map(|_| r.normal()).sum::<f64>() / n as f64;
        assert!(normal_mean.abs() < 0.01, "{normal_mean}");
    }
}
