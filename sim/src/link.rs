//! One direction of a node's network interface (its upload or its download), modelled as a
//! processor-sharing server.
//!
//! Every connection with bytes waiting is a *flow*; the flows share the link's capacity
//! equally, the way TCP connections through one bottleneck roughly do. Within a flow,
//! messages go strictly in order (like a TCP stream). So a small `Have` on an idle
//! connection is not stuck behind megabytes queued on another one, and the link never moves
//! more than `capacity_bytes_per_s` in total.
//!
//! Exact sharing in integer arithmetic uses a *virtual clock*: `served` is how many bytes
//! (in nano-bytes, to stay in integers) each active flow has received since the link
//! started. It grows at `capacity / active_flows`. A message that becomes the head of its
//! flow when `served == v` finishes when `served` reaches `v + size`; the earliest of these
//! is the link's next completion. Changes cost O(log flows).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::event_queue::{NANOS_PER_S, Nanos};

/// Nano-bytes per byte: `served` counts in these so that `elapsed_ns * capacity` is exact.
const NANO: u128 = NANOS_PER_S as u128;

/// A flow: a connection and the direction of travel on it.
pub type FlowKey = (u64, u8);

/// A processor-sharing link carrying items of type `T`.
pub struct Link<T> {
    capacity_bytes_per_s: u64,
    /// Virtual service each active flow has received, in nano-bytes.
    served: u128,
    updated_at: Nanos,
    /// (finish `served`, flow) of every flow's head item.
    finishes: BTreeSet<(u128, FlowKey)>,
    flows: BTreeMap<FlowKey, Flow<T>>,
}

struct Flow<T> {
    /// The finish mark of the head item.
    head_finish: u128,
    queue: VecDeque<(u64, T)>,
}

impl<T> Link<T> {
    pub fn new(capacity_bytes_per_s: u64) -> Link<T> {
        Link {
            capacity_bytes_per_s: capacity_bytes_per_s.max(1),
            served: 0,
            updated_at: 0,
            finishes: BTreeSet::new(),
            flows: BTreeMap::new(),
        }
    }

    fn advance(&mut self, now: Nanos) {
        let active = self.finishes.len() as u128;
        if active > 0 && now > self.updated_at {
            let elapsed = u128::from(now - self.updated_at);
            self.served += elapsed * u128::from(self.capacity_bytes_per_s) / active;
        }
        self.updated_at = self.updated_at.max(now);
    }

    /// Queues `item` of `size` bytes on `flow`.
    pub fn push(&mut self, now: Nanos, flow: FlowKey, size: u64, item: T) {
        self.advance(now);
        let served = self.served;
        let entry = self.flows.entry(flow).or_insert_with(|| Flow {
            head_finish: 0,
            queue: VecDeque::new(),
        });
        if entry.queue.is_empty() {
            entry.head_finish = served + u128::from(size) * NANO;
            self.finishes.insert((entry.head_finish, flow));
        }
        entry.queue.push_back((size, item));
    }

    /// When the next item finishes, if any is queued.
    pub fn next_completion(&self) -> Option<Nanos> {
        let &(finish, _) = self.finishes.first()?;
        let remaining = finish.saturating_sub(self.served);
        let active = self.finishes.len() as u128;
        let capacity = u128::from(self.capacity_bytes_per_s);
        let wait = (remaining * active).div_ceil(capacity);
        Some(
            self.updated_at
                .saturating_add(u64::try_from(wait).unwrap_or(u64::MAX)),
        )
    }

    /// Appends every item finished by `now` to `done`, in finishing order.
    pub fn take_finished(&mut self, now: Nanos, done: &mut Vec<(FlowKey, u64, T)>) {
        self.advance(now);
        while let Some(&(finish, flow)) = self.finishes.first() {
            if finish > self.served {
                break;
            }
            self.finishes.pop_first();
            // Unwrap: every flow in `finishes` has a non-empty queue.
            let entry = self.flows.get_mut(&flow).unwrap();
            let (done_size, item) = entry.queue.pop_front().unwrap();
            if let Some(&(size, _)) = entry.queue.front() {
                // The next item starts when this one ended, not when we noticed.
                entry.head_finish = finish + u128::from(size) * NANO;
                self.finishes.insert((entry.head_finish, flow));
            } else {
                self.flows.remove(&flow);
            }
            done.push((flow, done_size, item));
        }
    }

    /// Drops everything queued on `flow` (the connection broke); returns the items.
    pub fn remove_flow(&mut self, now: Nanos, flow: FlowKey) -> Vec<T> {
        self.advance(now);
        let Some(entry) = self.flows.remove(&flow) else {
            return Vec::new();
        };
        self.finishes.remove(&(entry.head_finish, flow));
        entry.queue.into_iter().map(|(_, item)| item).collect()
    }

    /// Drops everything (the node crashed).
    pub fn clear(&mut self, now: Nanos) {
        self.advance(now);
        self.flows.clear();
        self.finishes.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take<T>(link: &mut Link<T>, now: Nanos) -> Vec<(FlowKey, u64, T)> {
        let mut done = Vec::new();
        link.take_finished(now, &mut done);
        done
    }

    #[test]
    fn one_flow_runs_at_capacity() {
        let mut link = Link::new(1000);
        link.push(0, (1, 0), 500, "a");
        assert_eq!(link.next_completion(), Some(NANOS_PER_S / 2));
        assert!(take(&mut link, NANOS_PER_S / 2 - 1).is_empty());
        assert_eq!(take(&mut link, NANOS_PER_S / 2).len(), 1);
        assert_eq!(link.next_completion(), None);
    }

    #[test]
    fn two_flows_share_and_keep_order() {
        let mut link = Link::new(1000);
        link.push(0, (1, 0), 500, "a1");
        link.push(0, (1, 0), 500, "a2");
        link.push(0, (2, 0), 500, "b1");
        // a1 and b1 share: both done at 1 s; then a2 alone: 0.5 s more.
        assert_eq!(link.next_completion(), Some(NANOS_PER_S));
        let done = take(&mut link, NANOS_PER_S);
        assert_eq!(done.len(), 2);
        assert_eq!(link.next_completion(), Some(NANOS_PER_S * 3 / 2));
        let done = take(&mut link, NANOS_PER_S * 3 / 2);
        assert_eq!(done, vec![((1, 0), 500, "a2")]);
    }
}
