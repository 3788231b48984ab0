//! How many incoming connections a listener keeps, in total, from one address, and with
//! their handshake under way; and which one goes when a newcomer finds the listener full.
//!
//! A slot is taken when a socket is accepted (before its handshake) and given back when
//! the connection's last task ends, so sockets that stall their handshake count too. One
//! host cannot take every slot of a seeder or a tracker; IPv6 addresses count by their
//! /64, which one host usually has whole.
//!
//! A full listener makes room instead of refusing, so that sockets opened and left idle by
//! many hosts cannot lock real peers out: a newcomer evicts the oldest socket still in its
//! handshake (an honest one takes a round trip or two; one that stalls is what a flood
//! leaves), else the connection that has been silent longest, if it has been silent for
//! [`EVICTABLE_AFTER_SILENCE`] (every live connection hears a ping answered more often).
//! Only when neither exists is the newcomer refused.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A peer's listener: its machine keeps at most 128 peer connections (`connections_max`);
/// one address may hold a quarter of them (hosts behind one NAT share an address).
pub const PEER_INCOMING_MAX: usize = 160;
pub const PEER_INCOMING_PER_ADDRESS_MAX: usize = 32;
/// A tracker's listener: every member of its swarms holds one session.
pub const TRACKER_INCOMING_MAX: usize = 20_000;
pub const TRACKER_INCOMING_PER_ADDRESS_MAX: usize = 256;
/// Incoming connections whose handshake is under way, per listener: a flood of stalled
/// handshakes holds at most this many sockets (each for at most the handshake timeout,
/// and only until newer ones push it out).
pub const HANDSHAKES_IN_PROGRESS_MAX: usize = 64;
/// How long a connection must have received nothing to be evicted for a newcomer: three
/// of the peers' ping intervals (2 s), so a live connection never is.
pub const EVICTABLE_AFTER_SILENCE: Duration = Duration::from_secs(6);

/// Closes an evicted connection's socket (its tasks then end and give its slot back).
pub type Closer = Box<dyn FnOnce() + Send>;

/// The connections of one listener.
pub struct ConnLimits {
    total_max: usize,
    per_address_max: usize,
    handshakes_max: usize,
    /// What `last_heard` counts milliseconds from.
    epoch: Instant,
    held: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    next_id: u64,
    slots: HashMap<u64, Held1>,
    per_address: HashMap<IpAddr, usize>,
    handshaking: usize,
}

/// What the listener keeps of one connection.
struct Held1 {
    address: IpAddr,
    handshaking: bool,
    /// When it was accepted or last received a frame (ms from `epoch`).
    last_heard: Arc<AtomicU64>,
    close: Closer,
}

/// One connection's place; given back when dropped.
pub struct ConnSlot {
    limits: Arc<ConnLimits>,
    id: u64,
    last_heard: Arc<AtomicU64>,
}

impl ConnLimits {
    pub fn new(total_max: usize, per_address_max: usize) -> Arc<ConnLimits> {
        Arc::new(ConnLimits {
            total_max,
            per_address_max,
            handshakes_max: HANDSHAKES_IN_PROGRESS_MAX,
            epoch: Instant::now(),
            held: Mutex::new(Held::default()),
        })
    }

    pub fn peer() -> Arc<ConnLimits> {
        ConnLimits::new(PEER_INCOMING_MAX, PEER_INCOMING_PER_ADDRESS_MAX)
    }

    pub fn tracker() -> Arc<ConnLimits> {
        ConnLimits::new(TRACKER_INCOMING_MAX, TRACKER_INCOMING_PER_ADDRESS_MAX)
    }

    /// A slot for a new connection from `from`, in its handshake, evicting another (with
    /// its `close`) if the listener is full; or why there is none.
    pub fn try_take(
        self: &Arc<Self>,
        from: IpAddr,
        close: Closer,
    ) -> Result<ConnSlot, &'static str> {
        self.try_take_at(self.millis(Instant::now()), from, close)
    }

    fn try_take_at(
        self: &Arc<Self>,
        now: u64,
        from: IpAddr,
        close: Closer,
    ) -> Result<ConnSlot, &'static str> {
        let address = address_key(from);
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if held.per_address.get(&address).copied().unwrap_or(0) >= self.per_address_max {
            return Err("too many connections from this address");
        }
        if held.slots.len() >= self.total_max {
            let silence = EVICTABLE_AFTER_SILENCE.as_millis() as u64;
            let victim = held
                .oldest(|s| s.handshaking)
                .or_else(|| held.oldest(|s| now.saturating_sub(s.last_heard()) >= silence));
            match victim {
                Some(id) => held.evict(id),
                None => return Err("too many connections"),
            }
        }
        if held.handshaking >= self.handshakes_max
            && let Some(id) = held.oldest(|s| s.handshaking)
        {
            held.evict(id);
        }
        let id = held.next_id;
        held.next_id += 1;
        let last_heard = Arc::new(AtomicU64::new(now));
        held.slots.insert(
            id,
            Held1 {
                address,
                handshaking: true,
                last_heard: last_heard.clone(),
                close,
            },
        );
        *held.per_address.entry(address).or_default() += 1;
        held.handshaking += 1;
        Ok(ConnSlot {
            limits: self.clone(),
            id,
            last_heard,
        })
    }

    fn millis(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_millis() as u64
    }
}

impl Held {
    /// The slot heard from least recently among those `eligible`.
    fn oldest(&self, eligible: impl Fn(&Held1) -> bool) -> Option<u64> {
        self.slots
            .iter()
            .filter(|(_, s)| eligible(s))
            .min_by_key(|(id, s)| (s.last_heard(), **id))
            .map(|(id, _)| *id)
    }

    /// Forgets slot `id` (counts included); its connection is closed by `evict`, or has
    /// ended when `release` drops it.
    fn release(&mut self, id: u64) -> Option<Held1> {
        let slot = self.slots.remove(&id)?;
        if slot.handshaking {
            self.handshaking -= 1;
        }
        if let Some(count) = self.per_address.get_mut(&slot.address) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_address.remove(&slot.address);
            }
        }
        Some(slot)
    }

    fn evict(&mut self, id: u64) {
        if let Some(slot) = self.release(id) {
            tracing::debug!(address = %slot.address, "connection evicted for a newcomer");
            (slot.close)();
        }
    }
}

impl Held1 {
    fn last_heard(&self) -> u64 {
        self.last_heard.load(Ordering::Relaxed)
    }
}

impl ConnSlot {
    /// The connection's handshake is done: it no longer counts among those in progress.
    pub fn handshake_done(&self) {
        let mut held = self.limits.held.lock().unwrap_or_else(|e| e.into_inner());
        let Held {
            slots, handshaking, ..
        } = &mut *held;
        if let Some(slot) = slots.get_mut(&self.id)
            && slot.handshaking
        {
            slot.handshaking = false;
            *handshaking -= 1;
        }
    }

    /// A frame arrived: the connection is not silent.
    pub fn heard(&self) {
        let now = self.limits.millis(Instant::now());
        self.last_heard.store(now, Ordering::Relaxed);
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut held = self.limits.held.lock().unwrap_or_else(|e| e.into_inner());
        held.release(self.id);
    }
}

/// What connections are counted by: an IPv4 address (also when mapped into IPv6), or the
/// /64 of an IPv6 one.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(prefix.into())
        }
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// A closer that records that it ran.
    fn closer() -> (Closer, Arc<AtomicBool>) {
        let closed = Arc::new(AtomicBool::new(false));
        let flag = closed.clone();
        (
            Box::new(move || flag.store(true, Ordering::Relaxed)),
            closed,
        )
    }

    fn take(
        limits: &Arc<ConnLimits>,
        now: u64,
        from: &str,
    ) -> Result<(ConnSlot, Arc<AtomicBool>), &'static str> {
        let (close, closed) = closer();
        limits
            .try_take_at(now, ip(from), close)
            .map(|slot| (slot, closed))
    }

    #[test]
    fn one_address_holds_its_share_and_slots_come_back() {
        let limits = ConnLimits::new(5, 2);
        let a = [
            take(&limits, 0, "10.0.0.1").unwrap(),
            take(&limits, 0, "::ffff:10.0.0.1").unwrap(),
        ];
        assert_eq!(
            take(&limits, 0, "10.0.0.1").err(),
            Some("too many connections from this address")
        );
        // Another host of the same /64 is the same address; another /64 is not.
        let v6 = take(&limits, 0, "2001:db8::1").unwrap();
        let _v6_too = take(&limits, 0, "2001:db8::2").unwrap();
        assert!(take(&limits, 0, "2001:db8::3").is_err());
        let other = take(&limits, 0, "2001:db8:0:1::1").unwrap();
        drop(a);
        drop((v6, other));
        assert!(take(&limits, 0, "10.0.0.1").is_ok());
        let held = limits.held.lock().unwrap();
        assert_eq!(
            held.slots.len(),
            1,
            "only the second host of the /64 still holds one"
        );
        assert_eq!(held.handshaking, 1);
    }

    #[test]
    fn a_full_listener_evicts_the_oldest_handshake_then_the_longest_silent_connection() {
        let limits = ConnLimits::new(3, 3);
        let silent = EVICTABLE_AFTER_SILENCE.as_millis() as u64;
        let (open_old, open_old_closed) = take(&limits, 0, "10.0.0.1").unwrap();
        open_old.handshake_done();
        let (open_new, open_new_closed) = take(&limits, 1000, "10.0.0.2").unwrap();
        open_new.handshake_done();
        let (_stalled, stalled_closed) = take(&limits, 2000, "10.0.0.3").unwrap();

        // Full: the handshake under way goes first, even though it is the youngest.
        let (newcomer, _) = take(&limits, 3000, "10.0.0.4").unwrap();
        assert!(stalled_closed.load(Ordering::Relaxed));
        newcomer.handshake_done();

        // Full, no handshake under way, nobody silent long enough: refused.
        assert_eq!(
            take(&limits, 4000, "10.0.0.5").err(),
            Some("too many connections")
        );
        assert!(!open_old_closed.load(Ordering::Relaxed));

        // Once silent long enough, the one heard from least recently goes.
        let _kept = take(&limits, 1000 + silent, "10.0.0.5").unwrap();
        assert!(open_old_closed.load(Ordering::Relaxed));
        assert!(!open_new_closed.load(Ordering::Relaxed));
        drop(open_old); // Its tasks end: nothing more is given back.
        assert_eq!(limits.held.lock().unwrap().slots.len(), 3);
    }

    #[test]
    fn handshakes_in_progress_are_bounded_and_the_oldest_makes_room() {
        let limits = ConnLimits::new(1000, 1000);
        let mut stalled = Vec::new();
        for i in 0..HANDSHAKES_IN_PROGRESS_MAX {
            stalled.push(take(&limits, i as u64, &format!("10.0.1.{}", i % 250)).unwrap());
        }
        let _kept = take(&limits, 100, "10.0.2.1").unwrap();
        assert!(
            stalled[0].1.load(Ordering::Relaxed),
            "the oldest handshake was closed"
        );
        assert!(
            stalled[1..]
                .iter()
                .all(|(_, closed)| !closed.load(Ordering::Relaxed))
        );
        assert_eq!(
            limits.held.lock().unwrap().handshaking,
            HANDSHAKES_IN_PROGRESS_MAX
        );
    }
}
