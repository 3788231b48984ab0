//! Writes the seed corpora from valid traffic: `cargo run --example gen_corpus` from `fuzz/`
//! (any toolchain). Seeds are named `seed-*` so `.gitignore` keeps them and drops the files
//! fuzzing adds.

use std::fs;
use std::path::Path;

use p2p_core::wire::PROTOCOL_VERSION;
use p2p_core::{ChunkSet, ContentId, Manifest, Message, PeerId, Ticket};
use p2p_fuzz::peer_harness::{self, ops as pops};
use p2p_fuzz::tracker_harness::{self, ops as tops};

fn write(target: &str, name: &str, data: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(format!("seed-{name}")), data).unwrap();
}

fn wire_seeds(messages: &[Message]) {
    let mut all = vec![0u8]; // no cuts
    for (i, message) in messages.iter().enumerate() {
        let mut one = vec![2u8, 0, 6]; // cuts of 1 and 7 bytes
        one.extend_from_slice(&message.to_frame());
        write("wire_frames", &format!("{i:02}"), &one);
        all.extend_from_slice(&message.to_frame());
    }
    write("wire_frames", "all", &all);
}

fn manifest_seeds() {
    for (i, m) in tracker_harness::manifests().into_iter().enumerate() {
        let frame = Message::ManifestReply {
            manifest: m.clone(),
        }
        .to_frame();
        let mut reply = vec![0u8];
        reply.extend_from_slice(&frame[5..]);
        write("manifest", &format!("reply-{i}"), &reply);
        let frame = Message::Announce {
            chunks: ChunkSet::full(m.chunk_count()),
            manifest: m,
        }
        .to_frame();
        let mut announce = vec![1u8];
        announce.extend_from_slice(&frame[5..]);
        write("manifest", &format!("announce-{i}"), &announce);
    }
    let tricky = Manifest {
        name: "../../etc/CON.txt".into(),
        size: 1,
        chunk_size: 16 * 1024,
        chunk_hashes: vec![[9; 32]].into(),
        file_table: None,
    };
    let frame = Message::ManifestReply { manifest: tricky }.to_frame();
    let mut reply = vec![0u8];
    reply.extend_from_slice(&frame[5..]);
    write("manifest", "tricky-name", &reply);
}

fn ticket_seeds() {
    let id: ContentId = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
        .parse()
        .unwrap();
    let tickets = [
        Ticket {
            content_id: id,
            secret: p2p_core::secure::SwarmSecret::from_bytes([0x5e; 32]),
            name: "holiday photos: 2024/summer,final.zip".into(),
            trackers: vec!["10.0.0.5:7000".into(), "tracker.lan:7000".into()],
        },
        Ticket {
            content_id: id,
            secret: p2p_core::secure::SwarmSecret::from_bytes([0x5e; 32]),
            name: "ünïcode ✓".into(),
            trackers: vec!["[fe80::1]:7000".into()],
        },
        Ticket {
            content_id: id,
            secret: p2p_core::secure::SwarmSecret::from_bytes([0x5e; 32]),
            name: String::new(),
            trackers: vec![],
        },
    ];
    for (i, t) in tickets.iter().enumerate() {
        write("ticket", &format!("{i}"), t.to_string().as_bytes());
    }
    write("ticket", "v1", format!("p2p1:{id}:x:h:1").as_bytes());
    write(
        "ticket",
        "hand-written",
        format!(
            "  p2p2:{id}:{}:my file.txt:localhost:7000\n",
            "5e".repeat(32)
        )
        .as_bytes(),
    );
}

fn tracker_seeds() {
    let m = tracker_harness::manifests();
    let hello = |peer: u64, addr: &str| Message::Hello {
        version: PROTOCOL_VERSION,
        peer_id: PeerId(peer),
        listen_addr: addr.into(),
        swarm: "default".into(),
    };
    // Two peers: one publishes, the other locates, gets the manifest, announces partial
    // holdings, sends haves, lists; then one leaves and the other times out.
    let mut s = Vec::new();
    tops::accept(&mut s);
    tops::frame(&mut s, 0, &hello(1, "10.0.0.1:7000"));
    tops::frame(
        &mut s,
        0,
        &Message::Announce {
            manifest: m[2].clone(),
            chunks: ChunkSet::full(3),
        },
    );
    tops::accept(&mut s);
    tops::frame(&mut s, 1, &hello(2, "10.0.0.2:7000"));
    tops::frame(
        &mut s,
        1,
        &Message::Locate {
            content_id: m[2].content_id(),
        },
    );
    tops::frame(
        &mut s,
        1,
        &Message::GetManifest {
            content_id: m[2].content_id(),
        },
    );
    tops::frame(
        &mut s,
        1,
        &Message::Announce {
            manifest: m[2].clone(),
            chunks: {
                let mut c = ChunkSet::new(3);
                c.insert(0);
                c
            },
        },
    );
    tops::frame(
        &mut s,
        1,
        &Message::Have {
            content_id: m[2].content_id(),
            chunk_indices: vec![1, 2],
        },
    );
    tops::frame(&mut s, 1, &Message::ListFiles);
    tops::frame(&mut s, 1, &Message::ListPeers);
    tops::advance(&mut s, 5000);
    tops::frame(
        &mut s,
        0,
        &Message::Heartbeat {
            uploaded_bytes: 1,
            downloaded_bytes: 2,
        },
    );
    tops::frame(
        &mut s,
        0,
        &Message::Withdraw {
            content_id: m[2].content_id(),
        },
    );
    tops::frame(&mut s, 0, &Message::Goodbye);
    tops::advance(&mut s, 6000);
    tops::timeout(&mut s);
    tops::frame(&mut s, 1, &Message::ListFiles);
    write("tracker", "two-peers", &s);

    // A CLI client, a second session with the same id, a wrong version, a close.
    let mut s = Vec::new();
    tops::accept(&mut s);
    tops::frame(&mut s, 0, &hello(3, ""));
    tops::frame(
        &mut s,
        0,
        &Message::Announce {
            manifest: m[0].clone(),
            chunks: ChunkSet::full(0),
        },
    );
    tops::accept(&mut s);
    tops::frame(&mut s, 1, &hello(3, "10.0.0.1:7000"));
    tops::frame(
        &mut s,
        1,
        &Message::Announce {
            manifest: m[3].clone(),
            chunks: ChunkSet::full(9),
        },
    );
    tops::accept(&mut s);
    tops::frame(
        &mut s,
        2,
        &Message::Hello {
            version: 9,
            peer_id: PeerId(4),
            listen_addr: String::new(),
            swarm: "other".into(),
        },
    );
    tops::accept(&mut s);
    tops::frame(&mut s, 3, &Message::ListFiles);
    tops::close(&mut s, 1);
    tops::frame(
        &mut s,
        0,
        &Message::Locate {
            content_id: m[3].content_id(),
        },
    );
    write("tracker", "sessions", &s);
}

fn peer_seeds() {
    for (name, seed) in peer_harness::seeds() {
        write("peer", &name, &seed);
    }
    let _ = pops::ACCEPT;
}

fn coop_seeds() {
    for (name, seed) in p2p_fuzz::coop_harness::seeds() {
        write("coop", &name, &seed);
    }
}

/// The secure layer's targets read op bytes: these run a whole handshake untouched (every
/// flight passed whole), then one with each kind of meddling; and a record stream written
/// small, across a record boundary, and meddled with.
fn secure_seeds() {
    write("handshake", "clean", &[9, 1, 7, 0, 0, 0, 0, 0, 0, 0, 0]);
    for (i, op) in [3u8, 4, 5, 6, 7].into_iter().enumerate() {
        write(
            "handshake",
            &format!("meddle-{i}"),
            &[9, 1, 7, 0, 0, op, 20, 3, 0, 0, op, 9, 1],
        );
    }
    write("records", "clean", &[10, 0, 255, 1, 3, 0, 0]);
    write(
        "records",
        "meddled",
        &[10, 2, 0, 40, 3, 255, 4, 0, 9, 0, 3, 1, 2, 3, 5, 0],
    );
}

fn main() {
    let messages = p2p_core::testkit::samples();
    wire_seeds(&messages);
    manifest_seeds();
    ticket_seeds();
    tracker_seeds();
    peer_seeds();
    // wire_roundtrip is structured: its seeds are arbitrary bytes that decode to a spread
    // of variants.
    for v in 0..p2p_fuzz::generate::MESSAGE_VARIANTS as u8 {
        let mut seed = vec![v; 1];
        seed.extend((0..64u8).map(|i| i.wrapping_mul(37).wrapping_add(v)));
        write("wire_roundtrip", &format!("{v:02}"), &seed);
    }
    secure_seeds();
    coop_seeds();
    // Sanity: every tracker and peer seed runs clean.
    for entry in fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/tracker")).unwrap()
    {
        tracker_harness::run(&fs::read(entry.unwrap().path()).unwrap());
    }
    for (_, seed) in peer_harness::seeds() {
        peer_harness::run(&seed);
    }
    println!("seed corpora written");
}
