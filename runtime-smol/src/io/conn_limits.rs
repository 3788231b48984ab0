//! How many incoming connections a listener keeps, in total and from one address.
//!
//! A slot is taken when a socket is accepted (before its handshake) and given back when
//! the connection's last task ends, so sockets that stall their handshake count too. One
//! host cannot take every slot of a seeder or a tracker; IPv6 addresses count by their
//! /64, which one host usually has whole.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// A peer's listener: its machine keeps at most 128 peer connections (`connections_max`);
/// one address may hold a quarter of them (hosts behind one NAT share an address).
pub const PEER_INCOMING_MAX: usize = 160;
pub const PEER_INCOMING_PER_ADDRESS_MAX: usize = 32;
/// A tracker's listener: every member of its swarms holds one session.
pub const TRACKER_INCOMING_MAX: usize = 20_000;
pub const TRACKER_INCOMING_PER_ADDRESS_MAX: usize = 256;

/// The connections of one listener.
pub struct ConnLimits {
    total_max: usize,
    per_address_max: usize,
    held: Mutex<Held>,
}

#[derive(Default)]
struct Held {
    total: usize,
    per_address: HashMap<IpAddr, usize>,
}

/// One connection's place; given back when dropped.
pub struct ConnSlot {
    limits: Arc<ConnLimits>,
    address: IpAddr,
}

impl ConnLimits {
    pub fn new(total_max: usize, per_address_max: usize) -> Arc<ConnLimits> {
        Arc::new(ConnLimits {
            total_max,
            per_address_max,
            held: Mutex::new(Held::default()),
        })
    }

    pub fn peer() -> Arc<ConnLimits> {
        ConnLimits::new(PEER_INCOMING_MAX, PEER_INCOMING_PER_ADDRESS_MAX)
    }

    pub fn tracker() -> Arc<ConnLimits> {
        ConnLimits::new(TRACKER_INCOMING_MAX, TRACKER_INCOMING_PER_ADDRESS_MAX)
    }

    /// A slot for a connection from `from`, or why there is none.
    pub fn try_take(self: &Arc<Self>, from: IpAddr) -> Result<ConnSlot, &'static str> {
        let address = address_key(from);
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if held.total >= self.total_max {
            return Err("too many connections");
        }
        let of_address = held.per_address.entry(address).or_default();
        if *of_address >= self.per_address_max {
            return Err("too many connections from this address");
        }
        *of_address += 1;
        held.total += 1;
        Ok(ConnSlot {
            limits: self.clone(),
            address,
        })
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut held = self.limits.held.lock().unwrap_or_else(|e| e.into_inner());
        held.total = held.total.saturating_sub(1);
        if let Some(count) = held.per_address.get_mut(&self.address) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                held.per_address.remove(&self.address);
            }
        }
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
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_address_holds_its_share_and_slots_come_back() {
        let limits = ConnLimits::new(5, 2);
        let a = [
            limits.try_take(ip("10.0.0.1")).unwrap(),
            limits.try_take(ip("::ffff:10.0.0.1")).unwrap(),
        ];
        assert_eq!(
            limits.try_take(ip("10.0.0.1")).err(),
            Some("too many connections from this address")
        );
        // Another host of the same /64 is the same address; another /64 is not.
        let v6 = limits.try_take(ip("2001:db8::1")).unwrap();
        let _v6_too = limits.try_take(ip("2001:db8::2")).unwrap();
        assert!(limits.try_take(ip("2001:db8::3")).is_err());
        let other = limits.try_take(ip("2001:db8:0:1::1")).unwrap();
        assert_eq!(
            limits.try_take(ip("10.0.0.9")).err(),
            Some("too many connections")
        );
        drop(a);
        drop((v6, other));
        assert!(limits.try_take(ip("10.0.0.1")).is_ok());
        let held = limits.held.lock().unwrap();
        assert_eq!(
            held.total, 1,
            "only the second host of the /64 still holds one"
        );
    }
}
