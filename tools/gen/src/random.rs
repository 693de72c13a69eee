//! A small deterministic random source: xoshiro256** seeded through
//! SplitMix64. It is kept here rather than taken from a crate so that a seed
//! gives the same history on every platform and with every version of the
//! dependencies.

use rust_decimal::Decimal;

pub struct Random {
    state: [u64; 4],
}

impl Random {
    pub fn seeded(seed: u64) -> Self {
        let mut mixer = seed;
        let mut next = || {
            mixer = mixer.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = mixer;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Random {
            state: [next(), next(), next(), next()],
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let [s0, s1, s2, s3] = &mut self.state;
        let result = s1.wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let shifted = *s1 << 17;
        *s2 ^= *s0;
        *s3 ^= *s1;
        *s1 ^= *s2;
        *s0 ^= *s3;
        *s2 ^= shifted;
        *s3 = s3.rotate_left(45);
        result
    }

    /// A number in `0..bound`; `bound` must be at least 1.
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound >= 1, "an empty range has nothing to draw");
        ((u128::from(self.next_u64()) * u128::from(bound)) >> 64) as u64
    }

    /// An index into a collection of `len` entries (`len` ≥ 1).
    pub fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    /// A whole number in `low..=high`.
    pub fn between(&mut self, low: i64, high: i64) -> i64 {
        assert!(low <= high, "an empty range has nothing to draw");
        low + self.below((high - low) as u64 + 1) as i64
    }

    /// True with probability `probability` (0 to 1).
    pub fn chance(&mut self, probability: f64) -> bool {
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        unit < probability
    }

    /// A fraction between `low` and `high` thousandths, inclusive.
    pub fn permille(&mut self, low: i64, high: i64) -> Decimal {
        Decimal::new(self.between(low, high), 3)
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.index(items.len())]
    }

    /// A copy of one of `items`, drawn evenly.
    pub fn choose<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.index(items.len())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_the_same_numbers_and_another_seed_others() {
        let draw = |seed| {
            let mut random = Random::seeded(seed);
            (0..8).map(|_| random.next_u64()).collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn draws_stay_in_their_ranges() {
        let mut random = Random::seeded(1);
        for _ in 0..10_000 {
            assert!(random.below(3) < 3);
            assert!((-2..=2).contains(&random.between(-2, 2)));
            let fraction = random.permille(100, 200);
            assert!(fraction >= Decimal::new(1, 1) && fraction <= Decimal::new(2, 1));
        }
        assert!(!random.chance(0.0));
        assert!(random.chance(1.0));
    }
}
