#!/usr/bin/env bash
# One seeder and N getters of a MIB-MiB file, everything in /dev/shm: no disk in the way,
# so the time is what the connection code and the record layer cost (9 processes on 2
# cores are CPU-bound). Prints the seconds until the last getter has a verified copy.
#
#   bash bench/swarm_in_memory.sh BIN_DIR N MIB [plain]
#
# BIN_DIR holds a `p2p` binary: this build's (target/release) or an older one, so two
# builds can be alternated in the same minutes. `plain` sets P2P_BENCH_PLAINTEXT_RECORDS=1
# (records unsealed after the handshake: what encryption costs). Builds from before
# private swarms (no `new-secret`) run without secrets.
set -euo pipefail
BIN=$1 N=$2 MIB=$3 MODE=${4:-}
T=$(mktemp -d /dev/shm/p2p-swarm.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; sleep 0.3; rm -rf "$T"' EXIT
SRC=/dev/shm/p2p-swarm-src-$MIB
if [[ ! -f $SRC ]]; then
    { openssl enc -aes-128-ctr -pass pass:p2p-bench -nosalt -pbkdf2 </dev/zero 2>/dev/null || true; } |
        head -c $((MIB * 1024 * 1024)) >"$SRC"
fi
[[ $MODE == plain ]] && export P2P_BENCH_PLAINTEXT_RECORDS=1
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
secret=()
if "$BIN/p2p" new-secret --help >/dev/null 2>&1; then
    "$BIN/p2p" new-secret "$T/key" 2>/dev/null
    secret=(--secret-file "$T/key")
fi
"$BIN/p2p" tracker --listen "127.0.0.1:$port" "${secret[@]}" 2>"$T/tracker.log" &
sleep 0.2
"$BIN/p2p" share "$SRC" --tracker "127.0.0.1:$port" "${secret[@]}" >"$T/seed.out" 2>"$T/seed.log" &
for _ in $(seq 1 600); do [[ -s $T/seed.out ]] && break; sleep 0.05; done
ticket=$(head -1 "$T/seed.out")
sleep 0.5
start=$(date +%s.%N)
for i in $(seq 1 "$N"); do
    mkdir -p "$T/g$i"
    "$BIN/p2p" get "$ticket" -o "$T/g$i/" --seed >"$T/g$i.out" 2>"$T/g$i.log" &
done
while true; do
    done_count=0
    for i in $(seq 1 "$N"); do [[ -s $T/g$i.out ]] && done_count=$((done_count + 1)); done
    ((done_count == N)) && break
    sleep 0.02
done
end=$(date +%s.%N)
want=$(sha256sum "$SRC" | cut -d' ' -f1)
for i in $(seq 1 "$N"); do
    [[ $(cut -d' ' -f1 "$T/g$i.out") == "$want" ]] || { echo "getter $i: wrong hash" >&2; exit 1; }
done
echo "$end - $start" | bc
