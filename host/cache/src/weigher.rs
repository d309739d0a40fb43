//! How much of the cache's byte budget one entry takes. The store weighs its entries with
//! this, and the policy lab's simulated cache weighs its entries with the same function, so
//! a replay fills up exactly as `serve`'s cache does.

use mcp_bridge_config::CacheConfig;

/// Weighs entries for a byte budget with an entry cap.
///
/// moka bounds one weight, so every entry weighs at least `max_bytes / max_entries` (the
/// floor): then the byte budget also caps the number of entries, and `[cache] max_entries`
/// holds without a second bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryWeigher {
    floor: u32,
}

impl EntryWeigher {
    /// The weigher for a budget of `max_bytes` holding at most `max_entries` entries.
    pub fn new(max_bytes: u64, max_entries: u64) -> EntryWeigher {
        let floor = (max_bytes / max_entries.max(1)).clamp(1, u64::from(u32::MAX));
        EntryWeigher {
            floor: u32::try_from(floor).unwrap_or(u32::MAX),
        }
    }

    /// The weigher of a `[cache]` section.
    pub fn of(config: &CacheConfig) -> EntryWeigher {
        EntryWeigher::new(config.max_bytes, config.max_entries)
    }

    /// The weight of an entry whose result is `size` bytes of JSON: its size (saturating at
    /// what one moka weight can say), or the floor when it is smaller.
    pub fn weigh(&self, size: u64) -> u32 {
        u32::try_from(size).unwrap_or(u32::MAX).max(self.floor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_entries_weigh_the_budgets_share_per_entry() {
        let weigher = EntryWeigher::new(64 << 20, 10_000);
        assert_eq!(weigher.weigh(100), (64 << 20) / 10_000);
        assert_eq!(weigher.weigh(1 << 20), 1 << 20);
        assert_eq!(weigher.weigh(u64::MAX), u32::MAX);
    }

    #[test]
    fn the_floor_is_at_least_one_byte() {
        let weigher = EntryWeigher::new(10, 1_000);
        assert_eq!(weigher.weigh(0), 1);
        assert_eq!(EntryWeigher::new(1, 0).weigh(0), 1);
    }
}
