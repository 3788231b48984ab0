//! A fetch resumed from an earlier run's ranges fetches only the others, and says which
//! ranges are settled (written and trusted) so the driver can record them.

use bytes::Bytes;
use p2p_core::peer::{FetchSpec, Peer, PeerAction, PeerConfig, PeerNotice};
use p2p_core::testkit::remote::drain;
use p2p_core::{ChunkSet, Instant, PeerId};

const RANGE: u32 = 16 * 1024;

fn fetcher() -> Peer {
    let config = PeerConfig {
        peer_id: PeerId(1),
        swarm: "s".into(),
        listen_addr: "me:1".into(),
        origin_connections: 4,
        ..PeerConfig::default()
    };
    Peer::new(config, Instant::ZERO)
}

fn spec(ranges: u32) -> FetchSpec {
    FetchSpec {
        url: "http://origin.test/f".into(),
        validator: "\"v\"".into(),
        size: u64::from(ranges) * u64::from(RANGE),
        range_len: RANGE,
        spot_checks: true,
    }
}

/// Runs the fetch to its end, answering every fetch and write; returns the offsets
/// fetched and the ranges said settled, and whether it completed.
fn run(p: &mut Peer) -> (Vec<u64>, Vec<u32>, bool) {
    let (mut fetched, mut settled, mut complete) = (Vec::new(), Vec::new(), false);
    let mut actions = drain(p);
    while !actions.is_empty() {
        for action in actions {
            match action {
                PeerAction::FetchRange {
                    token,
                    offset,
                    length,
                    ..
                } => {
                    fetched.push(offset);
                    let data = Bytes::from(vec![1; length as usize]);
                    p.handle_range_fetched(Instant::ZERO, token, Ok(data));
                }
                PeerAction::WriteRange { token, .. } => {
                    p.handle_range_written(Instant::ZERO, token, Ok(()))
                }
                PeerAction::Notify(PeerNotice::RangeSettled { range_index, .. }) => {
                    settled.push(range_index)
                }
                PeerAction::Notify(PeerNotice::FetchComplete { .. }) => complete = true,
                _ => {}
            }
        }
        actions = drain(p);
    }
    fetched.sort();
    settled.sort();
    (fetched, settled, complete)
}

#[test]
fn only_the_ranges_not_on_disk_are_fetched_and_each_is_settled() {
    let mut p = fetcher();
    let mut on_disk = ChunkSet::new(4);
    on_disk.insert(0);
    on_disk.insert(2);
    p.fetch_resuming(Instant::ZERO, spec(4), Some(&on_disk));
    let (fetched, settled, complete) = run(&mut p);
    assert_eq!(fetched, vec![u64::from(RANGE), 3 * u64::from(RANGE)]);
    assert_eq!(settled, vec![1, 3]);
    assert!(complete);
}

#[test]
fn a_record_of_another_length_is_ignored_and_all_on_disk_completes_at_once() {
    let mut p = fetcher();
    p.fetch_resuming(Instant::ZERO, spec(4), Some(&ChunkSet::full(5)));
    let (fetched, _, complete) = run(&mut p);
    assert_eq!(fetched.len(), 4);
    assert!(complete);

    let mut p = fetcher();
    p.fetch_resuming(Instant::ZERO, spec(4), Some(&ChunkSet::full(4)));
    let (fetched, settled, complete) = run(&mut p);
    assert!(fetched.is_empty() && settled.is_empty());
    assert!(complete);
}
