//! Replays a corpus directory through the peer harness and says how many inputs completed
//! the download: `cargo run --release --example corpus_stats -- corpus/peer`.
fn main() {
    let dir = std::env::args().nth(1).expect("corpus directory");
    let (mut total, mut completed) = (0, 0);
    for entry in std::fs::read_dir(dir).unwrap() {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        total += 1;
        if p2p_fuzz::peer_harness::run(&data).completed {
            completed += 1;
        }
    }
    println!("{completed} of {total} inputs complete the download");
}
