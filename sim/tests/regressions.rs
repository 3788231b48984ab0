//! Seeds that once failed, kept by name. Each says what broke and where it was fixed.

use p2p_sim::{Scale, Scenario};

fn assert_passes(seed: u64, scenario: Scenario, scale: Scale) {
    p2p_sim::install_panic_hook();
    let report = p2p_sim::run(seed, scenario, scale, false);
    assert!(report.passed(), "{report}");
}

/// A flash crowd larger than the seeder's `connections_max` (185 peers, limit 128): peers
/// that started empty sent an empty `Announce` (ignored by the tracker) and then `Have`s
/// for a content the tracker did not know them to hold (also ignored), so the tracker never
/// listed them as sources and the 57 peers the seeder refused found no source at all
/// (liveness). Fixed in core by announcing on the first verified chunk (a402664).
#[test]
fn flash_crowd_beyond_seeder_connection_limit_seed_238() {
    assert_passes(238, Scenario::FlashCrowd, Scale::Full);
}

/// Slow peers at 3% of normal capacity (371 KB/s down) with 42 sources each: a slow peer
/// kept two requests in flight per source, ~80 chunks queued on its own downlink, so each
/// took about a minute to arrive; the 5 s request timeouts fired, the chunks were asked for
/// again and the link filled with copies nobody wanted (liveness: 26/95 chunks after 6000 s).
/// Fixed in core: a download keeps at most `backlog_max` of data in flight at its measured
/// total rate, and request timeouts count the requests ahead on our own downlink.
#[test]
fn slow_peer_congestion_collapse_seed_68() {
    assert_passes(68, Scenario::SlowPeers, Scale::Full);
}

/// Two partitions and a swizzle (97 peers, 68 chunks): 53 peers spent the fault phase cut
/// off from every holder of chunk 62 and connected to each other (49 to 53 connections
/// each, over the 48 sources a download keeps). After the heal none of them dialled any of
/// the 45 holders the tracker listed, since its sources were full; they asked each other
/// for bitfields every 250 ms instead (2.4 million `Interested`, as many `Bitfield`s by
/// t=320 s) until the 400 million event limit (liveness). Fixed in core: a needed chunk
/// without a connected source has a holder the tracker names dialled, beyond the source
/// target (`Download::rescuers`).
#[test]
fn sources_all_lacking_one_chunk_after_a_partition_seed_1368() {
    assert_passes(1368, Scenario::Partition, Scale::Full);
}

/// Coop (issue 17): a partition cut helper node2 off from the fetcher while its request,
/// slowed by the origin, was on the way; the fetcher gave the range to node3, whose copy
/// was written first, and node2's request reached the origin later. The simulator's
/// origin-bytes checker called those bytes waste (re-fetching what the fetcher had
/// written), but the core asked for them before they were written and has no way to cancel
/// a fetch in flight: they are a duplicated range, within the bound. Fixed in the
/// simulator: a request counts as waste only if the range was written when it was asked.
#[test]
fn coop_partitioned_helpers_late_request_is_a_retry_seed_51() {
    assert_passes(51, Scenario::Coop, Scale::Small);
}

/// Coop endgame (issue 17): the fetcher wrote range 0 while its endgame copy, assigned to
/// helper node2 just before, was on its way; node2 asked the origin for it after the write,
/// and the `CancelRange` reached node2 only after that. The simulator served the cancelled
/// fetch in full and called it waste. Fixed in the simulator: a `CancelFetch` answers a
/// request not yet at the origin with nothing sent (as the runtime stops reading), and the
/// bytes of one already answered count as a cancelled copy, within the bound.
#[test]
fn coop_endgame_copy_cancelled_on_its_way_to_the_origin_seed_85() {
    assert_passes(85, Scenario::Coop, Scale::Small);
}
