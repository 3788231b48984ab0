#!/usr/bin/env bash
# p2p benchmark: one transfer against curl|tee|openssl from nginx, swarms against aria2c
# (BitTorrent, local opentracker, mktorrent), peak RSS, and the simulator's bench figures.
# Everything runs on 127.0.0.1; every server and process is started and stopped here.
#
#   bash bench/run.sh                 # the whole benchmark (about 10-15 minutes)
#   RUNS=5 PAUSE=8 bash bench/run.sh  # more runs, longer pauses
#   ONLY=single bash bench/run.sh     # one part: single | swarm | memory | sim | attack | tree (comma list)
#
# Settings (environment): RUNS (3) runs per figure, medians reported; PAUSE (5) seconds
# between timed runs (this machine's memory is slow when fresh pages are first written:
# every tool gets the same rest); SINGLE_MIB (1024); SWARM_MIB (512); SWARMS ("8 4");
# MEM_GIB ("1 4"); MEM_RUNS (1); BENCH_DIR (a fresh directory under /tmp);
# CARGO_TARGET_DIR (target/); SKIP_BUILD=1 uses the binaries already built; BIN_DIR takes
# p2p and p2p-sim from elsewhere (implies SKIP_BUILD). The swarm part runs p2p a second way,
# with P2P_BENCH_PLAINTEXT_RECORDS=1 (handshakes kept, frames sent unsealed): the same build
# with its record layer off, alternated with the others, to measure what encryption costs.
# The tree part (issue 16) shares directories: tree A (TREE_A_SMALL=10000 files of 16 KiB in
# 100 directories, TREE_A_BIG=20 files of TREE_A_BIG_MIB=32 MiB) and tree B (TREE_B_FILES=100000
# files of 1 KiB in one directory); one transfer against `tar | tar` and `rsync -a` from an
# rsync daemon on 127.0.0.1, runs alternated; then tree A in a swarm of 1+TREE_SWARM (4)
# against aria2c with a multi-file torrent.
set -euo pipefail

RUNS=${RUNS:-3}
PAUSE=${PAUSE:-5}
SINGLE_MIB=${SINGLE_MIB:-1024}
SWARM_MIB=${SWARM_MIB:-512}
SWARMS=${SWARMS:-"8 4"}
MEM_GIB=${MEM_GIB:-"1 4"}
MEM_RUNS=${MEM_RUNS:-1}
ONLY=${ONLY:-single,swarm,memory,sim,attack,tree}
TREE_A_SMALL=${TREE_A_SMALL:-10000}
TREE_A_BIG=${TREE_A_BIG:-20}
TREE_A_BIG_MIB=${TREE_A_BIG_MIB:-32}
TREE_B_FILES=${TREE_B_FILES:-100000}
TREE_SWARM=${TREE_SWARM:-4}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=${BIN_DIR:-$TARGET/release}

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
want() { [[ ",$ONLY," == *",$1,"* ]]; }

# ------------------------------------------------------------------ setup and cleanup

T=${BENCH_DIR:-$(mktemp -d /tmp/p2p-bench.XXXXXX)}
mkdir -p "$T"
# What `p2p get` remembers of a swarm (its address book) stays with the run.
export P2P_STATE_DIR="$T/p2p-state"
chmod 755 "$T" # nginx workers run as another user
PIDS=()
cleanup() {
    local pid child
    for pid in "${PIDS[@]}"; do
        # Children first: /usr/bin/time does not pass signals on.
        for child in $(pgrep -P "$pid" 2>/dev/null); do
            kill -TERM "$child" 2>/dev/null || true
        done
        kill -TERM "$pid" 2>/dev/null || true
    done
    sleep 0.3
    for pid in "${PIDS[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    [[ -n ${BENCH_KEEP:-} ]] || rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts a background process, remembers its pid for cleanup; the pid is in $LAST_PID.
spawn() {
    "$@" &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
}

# Stops one process we started (SIGINT, then SIGKILL after a grace) and waits for it.
stop() {
    local pid=$1 sig=${2:-INT} i
    kill "-$sig" "$pid" 2>/dev/null || true
    for i in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

now() { date +%s.%N; }

# Waits until FILE has a line (at most SECS seconds); fails otherwise.
wait_line() {
    local file=$1 secs=${2:-600} start
    start=$(now)
    until [[ -s $file ]] && [[ $(wc -l <"$file") -ge 1 ]]; do
        if (($(echo "$(now) - $start > $secs" | bc))); then
            log "timed out waiting for $file"
            return 1
        fi
        sleep 0.02
    done
}

median() { python3 -c 'import sys,statistics; v=[float(x) for x in sys.argv[1:]]; print(statistics.median(v) if v else "nan")' "$@"; }

need_tools() {
    local missing=()
    command -v nginx >/dev/null || missing+=(nginx)
    command -v aria2c >/dev/null || missing+=(aria2)
    command -v opentracker >/dev/null || missing+=(opentracker)
    command -v mktorrent >/dev/null || missing+=(mktorrent)
    command -v curl >/dev/null || missing+=(curl)
    command -v openssl >/dev/null || missing+=(openssl)
    [[ -x /usr/bin/time ]] || missing+=(time)
    command -v bc >/dev/null || missing+=(bc)
    command -v rsync >/dev/null || missing+=(rsync)
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
}

# A file of N MiB of pseudo-random bytes (AES-CTR of zeros: fast and incompressible).
make_file() {
    local path=$1 mib=$2
    { openssl enc -aes-128-ctr -pass pass:p2p-bench -nosalt -pbkdf2 </dev/zero 2>/dev/null || true; } |
        head -c $((mib * 1024 * 1024)) >"$path"
}

sha_of() { openssl dgst -sha256 -r "$1" | cut -d' ' -f1; }

RESULTS=$T/results.tsv
: >"$RESULTS"
record() { printf '%s\t%s\n' "$1" "$2" >>"$RESULTS"; }

# ------------------------------------------------------------------ p2p helpers

# The swarm's secret, shared by the tracker and the seeder (getters take it from the ticket).
SWARM_KEY=$T/swarm.key

# Starts a tracker on a free port; sets TRACKER_ADDR and TRACKER_PID.
start_p2p_tracker() {
    local port
    port=$(free_port)
    TRACKER_ADDR=127.0.0.1:$port
    [[ -f $SWARM_KEY ]] || "$BIN/p2p" new-secret "$SWARM_KEY" 2>/dev/null
    spawn "$BIN/p2p" tracker --listen "$TRACKER_ADDR" --secret-file "$SWARM_KEY" 2>"$T/tracker.log"
    TRACKER_PID=$LAST_PID
    sleep 0.2
}

# Shares FILE through $TRACKER_ADDR under /usr/bin/time; sets TICKET, SEED_PID (of time).
start_p2p_seeder() {
    local file=$1 out=$T/seed.out
    : >"$out"
    spawn /usr/bin/time -v -o "$T/seed.time" "$BIN/p2p" share "$file" --tracker "$TRACKER_ADDR" \
        --secret-file "$SWARM_KEY" >"$out" 2>"$T/seed.log"
    SEED_PID=$LAST_PID
    wait_line "$out" 300
    TICKET=$(head -1 "$out")
}

# The p2p child of a /usr/bin/time process, to signal it directly.
child_of() { pgrep -P "$1" | head -1; }

stop_timed() {
    local time_pid=$1 child
    child=$(child_of "$time_pid" || true)
    [[ -n $child ]] && kill -INT "$child" 2>/dev/null || true
    stop "$time_pid"
}

max_rss_kib() { awk -F': ' '/Maximum resident set size/ {print $2}' "$1" 2>/dev/null || echo nan; }

# ------------------------------------------------------------------ 1. one transfer

bench_single() {
    local mib=$SINGLE_MIB file=$T/src/single.bin expect port run start end secs
    mkdir -p "$T/src" "$T/www"
    log "single: making a $mib MiB file"
    make_file "$file" "$mib"
    expect=$(sha_of "$file")
    ln -f "$file" "$T/www/single.bin"

    # nginx on a free port, its own prefix and config.
    port=$(free_port)
    mkdir -p "$T/nginx/logs"
    cat >"$T/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $T/nginx/nginx.pid;
error_log $T/nginx/logs/error.log warn;
events { worker_connections 64; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path $T/nginx/body;
    proxy_temp_path $T/nginx/proxy;
    fastcgi_temp_path $T/nginx/fastcgi;
    uwsgi_temp_path $T/nginx/uwsgi;
    scgi_temp_path $T/nginx/scgi;
    server {
        listen 127.0.0.1:$port;
        root $T/www;
    }
}
EOF
    spawn nginx -p "$T/nginx" -c "$T/nginx/nginx.conf"
    local nginx_pid=$LAST_PID
    local i
    for i in $(seq 1 100); do
        curl -sfI "http://127.0.0.1:$port/single.bin" >/dev/null && break
        sleep 0.1
    done

    start_p2p_tracker
    start_p2p_seeder "$file"

    for run in $(seq 1 "$RUNS"); do
        sleep "$PAUSE"
        rm -f "$T/out.bin"
        start=$(now)
        local got
        got=$(curl -sS "http://127.0.0.1:$port/single.bin" | tee "$T/out.bin" | openssl dgst -sha256 -r | cut -d' ' -f1)
        end=$(now)
        [[ $got == "$expect" ]] || { log "curl: wrong hash ($got, $(stat -c %s "$T/out.bin") bytes)"; tail -3 "$T/nginx/logs/error.log" >&2; exit 1; }
        secs=$(echo "$end - $start" | bc)
        record single.curl.secs "$secs"
        log "single run $run: curl|tee|openssl ${secs}s"
        rm -f "$T/out.bin"

        sleep "$PAUSE"
        mkdir -p "$T/get"
        rm -rf "$T/get"/*
        start=$(now)
        /usr/bin/time -v -o "$T/get.time" "$BIN/p2p" get "$TICKET" -o "$T/get/" >"$T/get.out" 2>"$T/get.log"
        end=$(now)
        got=$(cut -d' ' -f1 "$T/get.out")
        [[ $got == "$expect" ]] || { log "p2p: wrong hash: $(cat "$T/get.out" "$T/get.log")"; exit 1; }
        secs=$(echo "$end - $start" | bc)
        record single.p2p.secs "$secs"
        [[ $mib == 1024 ]] && record mem.get.1 "$(max_rss_kib "$T/get.time")"
        log "single run $run: p2p get ${secs}s (rss $(max_rss_kib "$T/get.time") KiB)"
        rm -rf "$T/get"
    done
    stop_timed "$SEED_PID"
    [[ $mib == 1024 ]] && record mem.seed.1 "$(max_rss_kib "$T/seed.time")"
    stop "$TRACKER_PID"
    stop "$nginx_pid" QUIT
    rm -rf "$T/src" "$T/www"
}

# ------------------------------------------------------------------ 2. swarms

# p2p: one seeder, N getters (each keeps seeding); seconds until each has a verified copy.
swarm_p2p() {
    local n=$1 file=$2 expect=$3 i start pids=() times=()
    start_p2p_tracker
    start_p2p_seeder "$file"
    sleep 0.5
    start=$(now)
    for i in $(seq 1 "$n"); do
        mkdir -p "$T/g$i"
        : >"$T/g$i.out"
        spawn "$BIN/p2p" get "$TICKET" -o "$T/g$i/" --seed >"$T/g$i.out" 2>"$T/g$i.log"
        pids+=("$LAST_PID")
    done
    local pending=$n done_at=()
    declare -A finished=()
    while ((pending > 0)); do
        for i in $(seq 1 "$n"); do
            [[ -n ${finished[$i]:-} ]] && continue
            if [[ -s $T/g$i.out ]]; then
                finished[$i]=1
                done_at+=("$(echo "$(now) - $start" | bc)")
                pending=$((pending - 1))
            elif ! kill -0 "${pids[$((i - 1))]}" 2>/dev/null; then
                log "p2p getter $i died: $(tail -3 "$T/g$i.log")"
                exit 1
            fi
        done
        if (($(echo "$(now) - $start > 600" | bc))); then
            log "p2p swarm timed out"
            exit 1
        fi
        sleep 0.02
    done
    for i in $(seq 1 "$n"); do
        [[ $(cut -d' ' -f1 "$T/g$i.out") == "$expect" ]] || { log "p2p getter $i: wrong hash"; exit 1; }
    done
    for i in $(seq 1 "$n"); do stop "${pids[$((i - 1))]}"; done
    stop_timed "$SEED_PID"
    stop "$TRACKER_PID"
    for i in $(seq 1 "$n"); do rm -rf "$T/g$i" "$T/g$i.out" "$T/g$i.log"; done
    SWARM_TIMES=$(printf '%s\n' "${done_at[@]}" | sort -g | tr '\n' ' ')
}

# The same build with its record layer off (handshakes kept, frames unsealed): what
# encryption costs, measured against p2p in the same run.
swarm_p2pplain() {
    export P2P_BENCH_PLAINTEXT_RECORDS=1
    swarm_p2p "$@"
    unset P2P_BENCH_PLAINTEXT_RECORDS
}

ARIA_COMMON=(
    --enable-dht=false --enable-dht6=false --bt-enable-lpd=false --enable-peer-exchange=false
    --bt-external-ip=127.0.0.1 --disable-ipv6=true --check-certificate=false
    --bt-save-metadata=false --bt-metadata-only=false --follow-torrent=true
    --bt-tracker-connect-timeout=5 --bt-tracker-interval=2 --bt-max-peers=55
    --seed-ratio=0.0 --seed-time=100000 --summary-interval=0 --console-log-level=warn
    --file-allocation=none
    --max-overall-upload-limit=0 --max-upload-limit=0 --no-conf=true
)

swarm_aria2() {
    local n=$1 file=$2 expect=$3 i start port tport pids=()
    tport=$(free_port)
    rm -f "$T/swarm.torrent"
    mktorrent -p -l 20 -a "http://127.0.0.1:$tport/announce" -o "$T/swarm.torrent" "$file" >/dev/null
    # Debian's opentracker serves whitelisted torrents only; it chroots into -d.
    mkdir -p "$T/ot"
    aria2c -S "$T/swarm.torrent" | awk '/Info Hash:/ {print $3}' >"$T/ot/wl"
    spawn opentracker -i 127.0.0.1 -p "$tport" -P "$tport" -d "$T/ot" -w /wl 2>"$T/opentracker.log"
    local ot_pid=$LAST_PID
    sleep 0.3
    mkdir -p "$T/aseed"
    if [[ -d $file ]]; then
        cp -al "$file" "$T/aseed/$(basename "$file")"
    else
        ln -f "$file" "$T/aseed/$(basename "$file")"
    fi
    port=$(free_port)
    spawn aria2c "${ARIA_COMMON[@]}" --listen-port="$port" --bt-seed-unverified=true \
        --check-integrity=false --dir="$T/aseed" "$T/swarm.torrent" >"$T/aseed.log" 2>&1
    local seed_pid=$LAST_PID
    sleep 2 # the seeder announces
    cat >"$T/done.sh" <<'EOF'
#!/bin/sh
# $3 is the first file's path, $T/aN/d/FILE (a file) or $T/aN/d/DIR/... (a tree).
date +%s.%N > "$(printf '%s\n' "$3" | sed -E 's#(/a[0-9]+)/d/.*#\1#')/done"
EOF
    chmod +x "$T/done.sh"
    start=$(now)
    for i in $(seq 1 "$n"); do
        mkdir -p "$T/a$i/d"
        port=$(free_port)
        spawn aria2c "${ARIA_COMMON[@]}" --listen-port="$port" --dir="$T/a$i/d" \
            --on-bt-download-complete="$T/done.sh" "$T/swarm.torrent" >"$T/a$i.log" 2>&1
        pids+=("$LAST_PID")
    done
    local times=()
    for i in $(seq 1 "$n"); do
        wait_line "$T/a$i/done" 600 || { log "aria2 getter $i: $(tail -3 "$T/a$i.log")"; exit 1; }
    done
    for i in $(seq 1 "$n"); do
        times+=("$(echo "$(cat "$T/a$i/done") - $start" | bc)")
    done
    for i in $(seq 1 "$n"); do
        if [[ -d $file ]]; then
            diff -rq "$file" "$T/a$i/d/$(basename "$file")" >/dev/null || { log "aria2 getter $i: trees differ"; exit 1; }
        else
            [[ $(sha_of "$T/a$i/d/$(basename "$file")") == "$expect" ]] || { log "aria2 getter $i: wrong hash"; exit 1; }
        fi
    done
    for i in $(seq 1 "$n"); do stop "${pids[$((i - 1))]}"; done
    stop "$seed_pid"
    stop "$ot_pid" TERM
    for i in $(seq 1 "$n"); do rm -rf "$T/a$i" "$T/a$i.log"; done
    rm -rf "$T/aseed"
    SWARM_TIMES=$(printf '%s\n' "${times[@]}" | sort -g | tr '\n' ' ')
}

bench_swarm() {
    local file=$T/src/swarm.bin expect n run
    mkdir -p "$T/src"
    log "swarm: making a $SWARM_MIB MiB file"
    make_file "$file" "$SWARM_MIB"
    expect=$(sha_of "$file")
    for n in $SWARMS; do
        for run in $(seq 1 "$RUNS"); do
            for tool in p2p p2pplain aria2; do
                sleep "$PAUSE"
                "swarm_$tool" "$n" "$file" "$expect"
                # shellcheck disable=SC2086
                set -- $SWARM_TIMES
                local last=${!#}
                record "swarm$n.$tool.median" "$(median "$@")"
                record "swarm$n.$tool.last" "$last"
                log "swarm 1+$n run $run: $tool done at: $SWARM_TIMES"
            done
        done
    done
    rm -rf "$T/src"
}

# ------------------------------------------------------------------ 3. memory

bench_memory() {
    local gib file run
    mkdir -p "$T/src"
    for gib in $MEM_GIB; do
        [[ $gib == 1 ]] && want single && continue # measured by the single-transfer runs
        file=$T/src/mem$gib.bin
        log "memory: making a $gib GiB file"
        make_file "$file" $((gib * 1024))
        start_p2p_tracker
        start_p2p_seeder "$file"
        for run in $(seq 1 "$MEM_RUNS"); do
            sleep "$PAUSE"
            mkdir -p "$T/get"
            /usr/bin/time -v -o "$T/get.time" "$BIN/p2p" get "$TICKET" -o "$T/get/" >"$T/get.out" 2>"$T/get.log" ||
                { log "p2p get failed: $(tail -3 "$T/get.log")"; exit 1; }
            record "mem.get.$gib" "$(max_rss_kib "$T/get.time")"
            rm -rf "$T/get"
        done
        stop_timed "$SEED_PID"
        record "mem.seed.$gib" "$(max_rss_kib "$T/seed.time")"
        stop "$TRACKER_PID"
        rm -f "$file"
    done
    rm -rf "$T/src"
}

# ------------------------------------------------------------------ 4. simulator

# ------------------------------------------------------------------ 5. a hostile member

# A getter of one seeder alone, and beside two members that ask for every block and never
# read (issue 14), runs alternated: the Rust harness speaks the real protocol, so this
# part runs it as an ignored test of the tests crate, against our release binary.
bench_attack() {
    local line
    log "attack: a getter beside two non-reading members"
    line=$(cd "$ROOT" && P2P_BIN=$BIN/p2p RUNS=$RUNS cargo test --release -q -p p2p-tests \
        --test hostile_member bench_getter_beside_non_readers -- --ignored --nocapture 2>/dev/null |
        grep '^getter of')
    log "attack: $line"
    record attack.alone "$(sed -E 's/.*alone ([0-9.]+) s.*/\1/' <<<"$line")"
    record attack.attacked "$(sed -E 's/.*non-readers ([0-9.]+) s.*/\1/' <<<"$line")"
}

bench_sim() {
    if [[ ! -x $BIN/p2p-sim ]]; then
        log "sim: no p2p-sim binary; skipped"
        return
    fi
    log "sim: p2p-sim bench --json"
    if ! timeout 600 "$BIN/p2p-sim" bench --json >"$T/sim.json" 2>"$T/sim.log"; then
        log "sim: p2p-sim bench failed; skipped: $(tail -3 "$T/sim.log")"
        : >"$T/sim.json"
    fi
}

# ------------------------------------------------------------------ 6. directories

# Tree A: many 16 KiB files in 100 directories and a few large ones; tree B: many 1 KiB
# files in one directory. Pseudo-random bytes, every file different.
make_trees() {
    python3 - "$T/trees" "$TREE_A_SMALL" "$TREE_A_BIG" "$TREE_A_BIG_MIB" "$TREE_B_FILES" <<'EOF'
import hashlib, os, sys
root, small, big, big_mib, b_files = sys.argv[1], *map(int, sys.argv[2:])
def write(path, size, seed):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        counter = 0
        while size > 0:
            block = hashlib.shake_256(f"{seed}:{counter}".encode()).digest(min(size, 1 << 20))
            f.write(block)
            size -= len(block)
            counter += 1
for i in range(small):
    write(f"{root}/A/d{i % 100:02}/f{i:05}.bin", 16 * 1024, f"a{i}")
for i in range(big):
    write(f"{root}/A/big/shard{i:02}.bin", big_mib << 20, f"big{i}")
for i in range(b_files):
    write(f"{root}/B/f{i:06}.txt", 1024, f"b{i}")
EOF
}

# Times one command (seconds on stdout); its output goes to $T/cmd.log.
timed() {
    local start end
    start=$(now)
    "$@" >"$T/cmd.log" 2>&1 || { log "failed: $* : $(tail -3 "$T/cmd.log")"; exit 1; }
    end=$(now)
    echo "$end - $start" | bc
}

tree_tar() { mkdir -p "$2" && tar -C "$1" -cf - . | tar -C "$2" -xf -; }

bench_tree() {
    local name src dst run secs port rsync_pid start tar_secs rsync_secs
    log "tree: making tree A ($TREE_A_SMALL x 16 KiB + $TREE_A_BIG x $TREE_A_BIG_MIB MiB) and tree B ($TREE_B_FILES x 1 KiB)"
    make_trees
    port=$(free_port)
    cat >"$T/rsyncd.conf" <<EOF
use chroot = false
uid = root
gid = root
[trees]
    path = $T/trees
    read only = true
EOF
    spawn rsync --daemon --no-detach --address=127.0.0.1 --port="$port" --config="$T/rsyncd.conf"
    rsync_pid=$LAST_PID
    sleep 0.5
    for name in A B; do
        src=$T/trees/$name
        dst=$T/dst
        start_p2p_tracker
        start=$(now)
        start_p2p_seeder "$src"
        secs=$(echo "$(now) - $start" | bc)
        record "tree$name.share.secs" "$secs"
        log "tree $name: shared (walked and hashed) in ${secs}s"
        for run in $(seq 1 "$RUNS"); do
            sleep "$PAUSE"
            rm -rf "$dst"
            tar_secs=$(timed tree_tar "$src" "$dst/$name")
            record "tree$name.tar.secs" "$tar_secs"
            sleep "$PAUSE"
            rm -rf "$dst"
            mkdir -p "$dst"
            rsync_secs=$(timed rsync -a "rsync://127.0.0.1:$port/trees/$name/" "$dst/$name/")
            record "tree$name.rsync.secs" "$rsync_secs"
            sleep "$PAUSE"
            rm -rf "$dst"
            mkdir -p "$dst"
            secs=$(timed "$BIN/p2p" get "$TICKET" -o "$dst/")
            record "tree$name.p2p.secs" "$secs"
            diff -rq "$src" "$dst/$name" >/dev/null || { log "p2p: tree $name differs"; exit 1; }
            if [[ $name == A ]]; then TREE_A_SHA=$(cut -d' ' -f1 "$T/cmd.log" | grep -E '^[0-9a-f]{64}$' | head -1); fi
            log "tree $name run $run: tar ${tar_secs}s, rsync ${rsync_secs}s, p2p ${secs}s"
            rm -rf "$dst"
        done
        stop_timed "$SEED_PID"
        stop "$TRACKER_PID"
    done
    stop "$rsync_pid" TERM
    for run in $(seq 1 "$RUNS"); do
        for tool in p2p aria2; do
            sleep "$PAUSE"
            "swarm_$tool" "$TREE_SWARM" "$T/trees/A" "${TREE_A_SHA:-}"
            # shellcheck disable=SC2086
            set -- $SWARM_TIMES
            record "treeswarm.$tool.last" "${!#}"
            log "tree A swarm 1+$TREE_SWARM run $run: $tool done at: $SWARM_TIMES"
        done
    done
    rm -rf "$T/trees"
}

# ------------------------------------------------------------------ report

report() {
    TREE_A_SMALL=$TREE_A_SMALL TREE_A_BIG=$TREE_A_BIG TREE_A_BIG_MIB=$TREE_A_BIG_MIB TREE_B_FILES=$TREE_B_FILES \
        python3 - "$RESULTS" "$T/sim.json" "$RUNS" "$SINGLE_MIB" "$SWARM_MIB" "$SWARMS" "$TREE_SWARM" <<'EOF'
import json, statistics, sys
from collections import defaultdict
path, sim_path, runs, single_mib, swarm_mib, swarms, tree_swarm = sys.argv[1:8]
v = defaultdict(list)
for line in open(path):
    k, x = line.rstrip("\n").split("\t")
    try:
        v[k].append(float(x))
    except ValueError:
        pass
med = lambda k: statistics.median(v[k]) if v[k] else float("nan")
rows = []
def row(what, p2p, other, ratio, target=""):
    rows.append((what, p2p, other, ratio, target))
if v["single.p2p.secs"]:
    mib = float(single_mib)
    p, c = mib / med("single.p2p.secs"), mib / med("single.curl.secs")
    row(f"one transfer, {int(mib)} MiB (MiB/s)", f"{p:.0f}", f"{c:.0f} (curl|tee|openssl)",
        f"{p / c:.2f}x throughput", ">= 3x")
for n in swarms.split():
    if not v[f"swarm{n}.p2p.last"]:
        continue
    for kind in ("median", "last"):
        p, a = med(f"swarm{n}.p2p.{kind}"), med(f"swarm{n}.aria2.{kind}")
        row(f"swarm 1+{n}, {swarm_mib} MiB, {kind} getter done (s)", f"{p:.2f}",
            f"{a:.2f} (aria2c)", f"{p / a:.2f}x time", "<= 0.4x" if n == "8" and kind == "last" else "")
        if v[f"swarm{n}.p2pplain.{kind}"]:
            q = med(f"swarm{n}.p2pplain.{kind}")
            row(f"swarm 1+{n}, {swarm_mib} MiB, {kind} getter done (s)", f"{p:.2f}",
                f"{q:.2f} (p2p, records unsealed)", f"{p / q:.2f}x time",
                "<= 1.25x" if n == "8" and kind == "last" else "")
if v["attack.alone"]:
    a, b = med("attack.alone"), med("attack.attacked")
    row("getter, 16 MiB, beside 2 non-reading members (s)", f"{b:.2f}", f"{a:.2f} (p2p, alone)",
        f"{b / a:.1f}x time", "")
import os
env = lambda k: os.environ.get(k, "?")
trees = (("A", f"tree A, {env('TREE_A_SMALL')} x 16 KiB + {env('TREE_A_BIG')} x {env('TREE_A_BIG_MIB')} MiB"),
         ("B", f"tree B, {env('TREE_B_FILES')} x 1 KiB"))
for name, what in trees:
    if not v[f"tree{name}.p2p.secs"]:
        continue
    p = med(f"tree{name}.p2p.secs")
    for tool, label, target in (("tar", "tar | tar, local", "<= 1.5x" if name == "A" else ""),
                                ("rsync", "rsync -a, loopback daemon", "")):
        o = med(f"tree{name}.{tool}.secs")
        row(f"{what}, one transfer (s)", f"{p:.2f}", f"{o:.2f} ({label})", f"{p / o:.2f}x time", target)
    row(f"{what}, share: walk and hash (s)", f"{med(f'tree{name}.share.secs'):.2f}", "", "", "")
if v["treeswarm.p2p.last"]:
    p, a = med("treeswarm.p2p.last"), med("treeswarm.aria2.last")
    row(f"tree A, swarm 1+{tree_swarm}, last getter done (s)", f"{p:.2f}", f"{a:.2f} (aria2c)",
        f"{p / a:.2f}x time", "<= 0.5x")
for gib in ("1", "4"):
    for who in ("seed", "get"):
        k = f"mem.{who}.{gib}"
        if v[k]:
            row(f"peak RSS, {'seeder' if who == 'seed' else 'getter'}, {gib} GiB (MiB)",
                f"{max(v[k]) / 1024:.1f}", "", "", "< 32")
w = [max(len(str(r[i])) for r in rows + [("what", "p2p", "baseline", "ratio", "target")]) for i in range(5)]
fmt = "| " + " | ".join("{:<%d}" % x for x in w) + " |"
print(f"\nmedians over {runs} runs\n")
print(fmt.format("what", "p2p", "baseline", "ratio", "target"))
print("|" + "|".join("-" * (x + 2) for x in w) + "|")
for r in rows:
    print(fmt.format(*r))
try:
    sims = [json.loads(l) for l in open(sim_path) if l.strip()]
except (OSError, ValueError):
    sims = []
if sims:
    print("\np2p-sim bench (virtual time):\n")
    for s in sims:
        print("  " + json.dumps(s, sort_keys=True))
print("\nraw:")
for k in sorted(k for k in v if v[k]):
    print(f"  {k}: {' '.join(f'{x:g}' for x in v[k])}")
EOF
}

# ------------------------------------------------------------------ main

need_tools
if [[ -z ${SKIP_BUILD:-}${BIN_DIR:-} ]]; then
    log "building release binaries"
    (cd "$ROOT" && cargo build --release -p p2p && { cargo build --release -p p2p-sim 2>/dev/null || true; })
fi
[[ -x $BIN/p2p ]] || { log "no $BIN/p2p"; exit 1; }
log "machine: $(nproc) cores, $(lscpu | awk -F: '/Model name/ {gsub(/^ +/,"",$2); print $2}'), $(free -g | awk '/Mem:/ {print $2}') GiB RAM; workdir $T"
want single && bench_single
want swarm && bench_swarm
want memory && bench_memory
want sim && bench_sim
want attack && bench_attack
want tree && bench_tree
report | tee "$T/table.txt"
[[ -n ${BENCH_OUT:-} ]] && cp "$T/table.txt" "$BENCH_OUT"
exit 0
