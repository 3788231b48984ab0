//! `scripts/demo-hosts.sh` (issue 15) works as the README says: across network namespaces
//! (as root), a share with no flags, getters with only the ticket, and a get with the old
//! ticket after the sharer left. Without root it says "skipped" and passes.

use std::path::Path;
use std::process::Command;

use p2p_tests::netns::is_root;
use p2p_tests::p2p_bin;

#[test]
fn the_multi_host_demo_script_runs_and_every_copy_is_exact() {
    if !is_root() {
        eprintln!("skipped: the demo's network namespaces need root");
        return;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/demo-hosts.sh");
    let out = Command::new("bash")
        .arg(&script)
        .args(["3", "4"])
        .env("P2P_BIN", p2p_bin())
        .env_remove("P2P_NO_MDNS")
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}\n{stdout}\n{stderr}", out.status);
    assert!(
        stdout.contains("all copies exact: 2 hosts from the sharer, then 1 after it left"),
        "{stdout}"
    );
    // Host 3, host 2 (seeding), host 3 again.
    assert_eq!(stdout.matches("  exact").count(), 3, "{stdout}");
}
