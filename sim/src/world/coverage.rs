//! A set of byte offsets kept as disjoint intervals: which bytes of the file the origin has
//! sent at least once, and which the fetcher has written. Ranges are not aligned (spot
//! checks fall anywhere), so the set is byte-exact.

use std::collections::BTreeMap;

#[derive(Clone, Debug, Default)]
pub(crate) struct Coverage {
    /// start → end (exclusive), disjoint and not touching.
    spans: BTreeMap<u64, u64>,
}

impl Coverage {
    /// How many bytes of `start..end` are in the set.
    pub fn covered(&self, start: u64, end: u64) -> u64 {
        // The span starting at or before `start` may reach into the range; later ones
        // start inside it.
        let first = self.spans.range(..=start).next_back();
        let rest = self.spans.range(start.saturating_add(1)..end);
        first
            .into_iter()
            .chain(rest)
            .map(|(&s, &e)| e.min(end).saturating_sub(s.max(start)))
            .sum()
    }

    pub fn insert(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let (mut start, mut end) = (start, end);
        // Every span touching `start..end` is merged into it.
        let touching: Vec<(u64, u64)> = self
            .spans
            .range(..=end)
            .rev()
            .take_while(|&(_, &e)| e >= start)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in touching {
            self.spans.remove(&s);
            start = start.min(s);
            end = end.max(e);
        }
        self.spans.insert(start, end);
    }
}

#[cfg(test)]
mod tests {
    use super::Coverage;

    #[test]
    fn merges_and_counts_overlaps() {
        let mut c = Coverage::default();
        c.insert(10, 20);
        c.insert(30, 40);
        assert_eq!(c.covered(0, 100), 20);
        assert_eq!(c.covered(15, 35), 10);
        c.insert(20, 30);
        assert_eq!(c.covered(0, 100), 30);
        assert_eq!(c.covered(12, 13), 1);
        c.insert(5, 45);
        assert_eq!(c.covered(0, 100), 40);
        assert_eq!(c.covered(45, 50), 0);
    }
}
