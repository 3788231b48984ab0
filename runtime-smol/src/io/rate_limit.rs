//! The upload cap of a peer (`--upload-limit`): pieces paced across all its connections.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use smol::Timer;

/// Caps the bytes per second a peer uploads (all connections together), to model a network
/// link on loopback. Pieces are paced: each one may start once the previous ones have had
/// their time.
pub struct RateLimiter {
    bytes_per_sec: u64,
    next_free: Mutex<std::time::Instant>,
}

impl RateLimiter {
    pub fn new(bytes_per_sec: u64) -> Arc<RateLimiter> {
        Arc::new(RateLimiter {
            bytes_per_sec: bytes_per_sec.max(1),
            next_free: Mutex::new(std::time::Instant::now()),
        })
    }

    pub async fn acquire(&self, bytes: usize) {
        let cost = Duration::from_secs_f64(bytes as f64 / self.bytes_per_sec as f64);
        let start = {
            // A poisoned lock only means another writer panicked mid-update; the instant
            // inside is still a valid instant.
            let mut next_free = self.next_free.lock().unwrap_or_else(|e| e.into_inner());
            let start = (*next_free).max(std::time::Instant::now());
            *next_free = start + cost;
            start
        };
        if start > std::time::Instant::now() {
            Timer::at(start).await;
        }
    }
}
