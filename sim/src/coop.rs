//! The knobs of a cooperative-download run (`Scenario::Coop`): who takes part, how the file
//! is cut, and the simulated HTTP origin's link and faults. Drawn from the seed in a fixed
//! order, after everything the other scenarios draw.

use std::fmt;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::scenario::Scale;

/// Range lengths a job may be cut into (the core's minimum is 16 KiB).
const RANGE_LENS: [u32; 3] = [16 * 1024, 32 * 1024, 64 * 1024];
/// Fewest ranges a job is cut into, so that helpers have some to take.
pub(crate) const RANGES_MIN: u64 = 4;
const HELPER_COUNT_MAX_SMALL: u32 = 5;
const HELPER_COUNT_MAX_FULL: u32 = 12;
const GETTER_COUNT_MAX_SMALL: u32 = 3;
const GETTER_COUNT_MAX_FULL: u32 = 10;

#[derive(Clone, Debug, PartialEq)]
pub struct CoopKnobs {
    /// Peers that take ranges of the fetcher's job (nodes 2 and on).
    pub helper_count: u32,
    /// Peers that want the same URL once the fetch is done (after the helpers): they must
    /// get it from the swarm, not the origin.
    pub getter_count: u32,
    pub range_len_bytes: u32,
    /// Whether the fetcher spot-checks helpers' ranges against the origin (off when the
    /// file's SHA-256 is known, as with `p2p fetch --sha256`).
    pub spot_checks: bool,
    /// Each participant's own link to the origin (a slow node's is a fraction of it): the
    /// bottleneck that helpers add up, as on separate WAN uplinks.
    pub wan_download_bytes_per_s: u64,
    /// The origin's uplink, shared by every response in flight.
    pub origin_upload_bytes_per_s: u64,
    /// Round trip from a request to the response's first byte.
    pub origin_latency_ms: u64,
    /// During the fault phase: chance a request is answered with a retryable error (503).
    pub origin_error_probability: f64,
    /// During the fault phase: chance a request waits `origin_slow_factor` round trips.
    pub origin_slow_probability: f64,
    pub origin_slow_factor: u32,
    /// When the origin's file gets a new validator: every range asked for with the old one
    /// fails for good from then on (what `If-Range` makes of a changed file).
    pub validator_change_at_ms: Option<u64>,
}

impl CoopKnobs {
    /// Draws the knobs for a file of `file_size` bytes.
    pub fn generate(
        scale: Scale,
        file_size: u64,
        fault_phase_ms: u64,
        rng: &mut ChaCha8Rng,
    ) -> CoopKnobs {
        let (helpers_max, getters_max) = match scale {
            Scale::Small => (HELPER_COUNT_MAX_SMALL, GETTER_COUNT_MAX_SMALL),
            Scale::Full => (HELPER_COUNT_MAX_FULL, GETTER_COUNT_MAX_FULL),
        };
        let helper_count = rng.random_range(1..=helpers_max);
        let getter_count = rng.random_range(0..=getters_max);
        let drawn = RANGE_LENS[rng.random_range(0..RANGE_LENS.len())];
        let range_len_bytes = drawn
            .min((file_size / RANGES_MIN) as u32)
            .max(RANGE_LENS[0]);
        let spot_checks = rng.random_bool(0.5);
        // Slow enough that a fetch alone lasts seconds: faults strike while it runs.
        let wan_download_bytes_per_s = rng.random_range(64_000..=1_000_000u64);
        let origin_upload_bytes_per_s = wan_download_bytes_per_s * rng.random_range(2..=20u64);
        let origin_latency_ms = rng.random_range(1..=150u64);
        let origin_error_probability = if rng.random_bool(0.6) {
            rng.random_range(0.01..=0.3)
        } else {
            0.0
        };
        let (origin_slow_probability, origin_slow_factor) = if rng.random_bool(0.4) {
            (rng.random_range(0.05..=0.3), rng.random_range(3..=50))
        } else {
            (0.0, 1)
        };
        let validator_change_at_ms = rng
            .random_bool(0.1)
            .then(|| rng.random_range(0..=fault_phase_ms));
        CoopKnobs {
            helper_count,
            getter_count,
            range_len_bytes,
            spot_checks,
            wan_download_bytes_per_s,
            origin_upload_bytes_per_s,
            origin_latency_ms,
            origin_error_probability,
            origin_slow_probability,
            origin_slow_factor,
            validator_change_at_ms,
        }
    }
}

impl fmt::Display for CoopKnobs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "helper_count={} getter_count={} range_len_bytes={} spot_checks={} \
             wan_download_bytes_per_s={} origin_upload_bytes_per_s={} origin_latency_ms={} origin_error_probability={:.2} \
             origin_slow_probability={:.2} origin_slow_factor={} validator_change_at_ms={}",
            self.helper_count,
            self.getter_count,
            self.range_len_bytes,
            self.spot_checks,
            self.wan_download_bytes_per_s,
            self.origin_upload_bytes_per_s,
            self.origin_latency_ms,
            self.origin_error_probability,
            self.origin_slow_probability,
            self.origin_slow_factor,
            self.validator_change_at_ms
                .map_or("never".to_string(), |ms| ms.to_string()),
        )
    }
}
