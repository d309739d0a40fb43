//! The frequency sketch of the simulated cache: how often each key was looked up lately,
//! estimated the way moka's TinyLFU estimates it, so admission decisions in a replay
//! follow the production cache's.
//!
//! It is a count-min sketch of depth four with 4-bit counters (saturating at 15), sixteen
//! counters packed in each 64-bit word. A key's four counters sit in four words picked by
//! four hashes, each word holding them in one of its four groups of four counters, which
//! the key's low bits choose. After ten increments per word the sketch ages: every counter
//! is halved, so old popularity fades. The table has one word per entry the cache is
//! expected to hold, rounded up to a power of two.
//!
//! The hashes are this module's own (moka hashes key text with a per-process random seed,
//! so its collisions cannot be reproduced anyway); the sizes, the saturation and the
//! aging are moka's.

/// The most a counter can say.
const COUNTER_MAX: u64 = 0xF;
/// The low bit of every 4-bit counter in a word.
const LOW_BITS: u64 = 0x1111_1111_1111_1111;
/// Every counter bit except each counter's top bit: what is left of a word shifted right by
/// one once the bits that moved in from the next counter are cleared.
const HALVING_MASK: u64 = 0x7777_7777_7777_7777;
/// Odd multipliers that give each of the four rows its own word for a key.
const ROW_MULTIPLIERS: [u64; 4] = [
    0x9E37_79B9_7F4A_7C15,
    0xC2B2_AE3D_27D4_EB4F,
    0x1656_67B1_9E37_79F9,
    0xD6E8_FEB8_6659_FD93,
];
/// The sketch's largest table, in words (moka's limit on 64-bit targets).
const MAX_WORDS: u64 = 1 << 30;
/// The smallest capacity a sketch is sized for (moka's floor).
const MIN_CAPACITY: u64 = 128;
/// Increments per word between two agings.
const SAMPLES_PER_WORD: u64 = 10;

/// Lookup frequencies of keys, estimated; see the module documentation.
#[derive(Debug, Clone, Default)]
pub(crate) struct FrequencySketch {
    words: Vec<u64>,
    /// The number of words less one: the mask that maps a hash to a word.
    word_mask: u64,
    /// Increments since the last aging (less what aging took off).
    increments: u64,
    /// Increments that trigger the next aging.
    sample_size: u64,
}

impl FrequencySketch {
    /// Whether the sketch counts anything yet. moka starts counting only once its cache is
    /// half full, so an empty sketch estimates every key at zero and ignores increments.
    pub(crate) fn is_enabled(&self) -> bool {
        !self.words.is_empty()
    }

    /// Starts counting, sized for a cache expected to hold about `entries` entries.
    pub(crate) fn enable(&mut self, entries: u64) {
        let capacity = entries
            .clamp(MIN_CAPACITY, u64::from(u32::MAX))
            .min(MAX_WORDS);
        let words = capacity.next_power_of_two();
        self.words = vec![0; usize::try_from(words).unwrap_or(usize::MAX)];
        self.word_mask = words - 1;
        self.increments = 0;
        self.sample_size = capacity * SAMPLES_PER_WORD;
    }

    /// The estimated number of recent lookups of the key hashed to `hash` (at most 15).
    pub(crate) fn frequency(&self, hash: u64) -> u8 {
        if !self.is_enabled() {
            return 0;
        }
        let least = (0..4)
            .map(|row| {
                (self.words[self.word_of(hash, row)] >> Self::shift_of(hash, row)) & COUNTER_MAX
            })
            .min()
            .unwrap_or(0);
        u8::try_from(least).unwrap_or(u8::MAX)
    }

    /// Counts one lookup of the key hashed to `hash`, aging the sketch when its sample is full.
    pub(crate) fn increment(&mut self, hash: u64) {
        if !self.is_enabled() {
            return;
        }
        let mut counted = false;
        for row in 0..4 {
            let word = self.word_of(hash, row);
            let shift = Self::shift_of(hash, row);
            if (self.words[word] >> shift) & COUNTER_MAX < COUNTER_MAX {
                self.words[word] += 1 << shift;
                counted = true;
            }
        }
        // A key whose four counters are all saturated adds nothing, and does not bring the
        // next aging closer.
        if counted {
            self.increments += 1;
            if self.increments >= self.sample_size {
                self.age();
            }
        }
    }

    /// Halves every counter. A halved odd counter loses half an increment, so the increment
    /// count drops by a quarter of the odd counters (each key has four).
    fn age(&mut self) {
        let mut odd = 0u64;
        for word in &mut self.words {
            odd += u64::from((*word & LOW_BITS).count_ones());
            *word = (*word >> 1) & HALVING_MASK;
        }
        self.increments = (self.increments / 2).saturating_sub(odd / 4);
    }

    /// The word of `row` for a hash.
    fn word_of(&self, hash: u64, row: usize) -> usize {
        let mixed = hash
            .wrapping_add(ROW_MULTIPLIERS[row])
            .wrapping_mul(ROW_MULTIPLIERS[row]);
        usize::try_from((mixed ^ (mixed >> 32)) & self.word_mask).unwrap_or(0)
    }

    /// The bit offset of a hash's counter of `row` in its word: the hash's low two bits
    /// pick one of the word's four groups of four counters, `row` the counter in it.
    fn shift_of(hash: u64, row: usize) -> u32 {
        let group = (hash & 3) as u32;
        (group * 4 + row as u32) * 4
    }
}

/// A well-mixed 64-bit hash of a simulated cache's dense key (splitmix64's finalizer), so
/// neighbouring keys land on unrelated counters.
pub(crate) fn hash_key(key: u32) -> u64 {
    let mut hash = u64::from(key).wrapping_add(0x9E37_79B9_7F4A_7C15);
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    hash ^ (hash >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_disabled_sketch_counts_nothing() {
        let mut sketch = FrequencySketch::default();
        sketch.increment(hash_key(1));
        assert_eq!(sketch.frequency(hash_key(1)), 0);
    }

    #[test]
    fn counts_saturate_at_fifteen_and_keys_stay_apart() {
        let mut sketch = FrequencySketch::default();
        sketch.enable(1024);
        for _ in 0..20 {
            sketch.increment(hash_key(7));
        }
        sketch.increment(hash_key(8));
        assert_eq!(sketch.frequency(hash_key(7)), 15);
        assert_eq!(sketch.frequency(hash_key(8)), 1);
        assert_eq!(sketch.frequency(hash_key(9)), 0);
    }

    #[test]
    fn aging_halves_the_counts() {
        let mut sketch = FrequencySketch::default();
        sketch.enable(MIN_CAPACITY);
        for _ in 0..8 {
            sketch.increment(hash_key(1));
        }
        sketch.increment(hash_key(2));
        sketch.age();
        assert_eq!(sketch.frequency(hash_key(1)), 4);
        assert_eq!(sketch.frequency(hash_key(2)), 0);
    }

    #[test]
    fn a_full_sample_ages_the_sketch() {
        let mut sketch = FrequencySketch::default();
        sketch.enable(MIN_CAPACITY);
        for key in 0..(MIN_CAPACITY * SAMPLES_PER_WORD) as u32 {
            sketch.increment(hash_key(key));
        }
        assert!(
            sketch.increments < sketch.sample_size / 2 + 1,
            "{} increments left of {}",
            sketch.increments,
            sketch.sample_size
        );
    }
}
