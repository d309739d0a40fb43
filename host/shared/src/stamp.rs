//! A stamp: the generations an entry's dependencies had in Redis when its fill started.
//! The entry is current while Redis still says the same; any invalidation since raised one
//! of them, and a lost Redis changed the epoch.

/// The epoch and one generation per dependency, in the order the dependencies were given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub epoch: u64,
    pub generations: Vec<u64>,
}

impl Stamp {
    /// The stamp and a value as one Redis value: the count of generations, the epoch and
    /// the generations (little-endian u64s), then the value's bytes.
    pub(crate) fn frame(&self, value: &[u8]) -> Vec<u8> {
        let mut framed = Vec::with_capacity(16 + 8 * self.generations.len() + value.len());
        framed.extend_from_slice(&(self.generations.len() as u64).to_le_bytes());
        framed.extend_from_slice(&self.epoch.to_le_bytes());
        for generation in &self.generations {
            framed.extend_from_slice(&generation.to_le_bytes());
        }
        framed.extend_from_slice(value);
        framed
    }

    /// Splits a framed value into its stamp and the value; `None` when it is not one.
    pub(crate) fn unframe(framed: &[u8]) -> Option<(Stamp, &[u8])> {
        let word = |at: usize| -> Option<u64> {
            let bytes = framed.get(at..at + 8)?;
            Some(u64::from_le_bytes(bytes.try_into().ok()?))
        };
        let count = usize::try_from(word(0)?).ok()?;
        // A count past what the value could hold is a corrupt frame, not an allocation.
        if count > framed.len() / 8 {
            return None;
        }
        let epoch = word(8)?;
        let generations = (0..count)
            .map(|index| word(16 + 8 * index))
            .collect::<Option<Vec<u64>>>()?;
        let value = framed.get(16 + 8 * count..)?;
        Some((Stamp { epoch, generations }, value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_garbage_is_refused() {
        let stamp = Stamp {
            epoch: 9,
            generations: vec![0, 3, u64::MAX],
        };
        let framed = stamp.frame(b"{\"a\":1}");
        let (back, value) = Stamp::unframe(&framed).unwrap_or_else(|| panic!("unframed"));
        assert_eq!(back, stamp);
        assert_eq!(value, b"{\"a\":1}");
        assert!(Stamp::unframe(b"short").is_none());
        let mut huge = u64::MAX.to_le_bytes().to_vec();
        huge.extend_from_slice(&[0; 16]);
        assert!(Stamp::unframe(&huge).is_none());
        assert!(Stamp::unframe(&framed[..20]).is_none());
    }
}
