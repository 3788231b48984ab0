#!/usr/bin/env bash
# p2p across N hosts on one machine (issue 15): N network namespaces on one bridge, each
# with its own address, stand for N machines on a LAN. Host 1 shares a file with no flags;
# every other host gets it with nothing but the ticket; then the sharer leaves, and a host
# gets the file again with the same old ticket, from the getter that seeds.
#
#   sudo bash scripts/demo-hosts.sh            # 4 hosts, 64 MiB
#   sudo bash scripts/demo-hosts.sh 8 256      # 8 hosts, 256 MiB
#
# Needs root (network namespaces) and iproute2. Every packet stays inside the namespaces
# this script makes (10.233.0.0/24, multicast included); all are deleted at the end.
# P2P_BIN names the binary (default: target/release/p2p, built if missing).
set -euo pipefail

HOSTS=${1:-4}
MIB=${2:-64}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
P2P=${P2P_BIN:-$ROOT/target/release/p2p}
PREFIX=p2pdemo$$
WAIT_S=120

die() { echo "demo-hosts: $*" >&2; exit 1; }
[[ $(id -u) == 0 ]] || die "network namespaces need root: run it with sudo"
command -v ip >/dev/null || die "needs iproute2 (the ip command)"
[[ $HOSTS =~ ^[0-9]+$ && $HOSTS -ge 3 && $HOSTS -le 50 ]] || die "hosts: 3 to 50, not '$HOSTS'"
[[ $MIB =~ ^[0-9]+$ && $MIB -ge 1 ]] || die "size in MiB: a whole number, not '$MIB'"
if [[ ! -x $P2P ]]; then
    echo "building p2p (cargo build --release -p p2p)..."
    (cd "$ROOT" && cargo build --release -p p2p)
fi

DIR=$(mktemp -d /tmp/p2p-demo-hosts.XXXXXX)
PIDS=()
cleanup() {
    # Every p2p of this demo names $DIR in its arguments.
    pkill -f -- "$DIR/" 2>/dev/null || true
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    for i in $(seq 1 "$HOSTS"); do ip netns del "$PREFIX-$i" 2>/dev/null || true; done
    ip netns del "$PREFIX-sw" 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT

addr() { echo "10.233.0.$1"; }
on() { # on HOST CMD...: run CMD in host HOST's namespace, with its own state directory
    local host=$1
    shift
    P2P_STATE_DIR=$DIR/state-$host ip netns exec "$PREFIX-$host" "$@"
}

echo "making $HOSTS hosts on one bridge (10.233.0.0/24)..."
ip netns add "$PREFIX-sw"
ip -n "$PREFIX-sw" link add br0 type bridge
ip -n "$PREFIX-sw" link set br0 up
for i in $(seq 1 "$HOSTS"); do
    ip netns add "$PREFIX-$i"
    ip link add "p2pdh$i-$$" type veth peer name "p2pds$i-$$"
    ip link set "p2pdh$i-$$" netns "$PREFIX-$i"
    ip link set "p2pds$i-$$" netns "$PREFIX-sw"
    ip -n "$PREFIX-sw" link set "p2pds$i-$$" master br0 up
    ip -n "$PREFIX-$i" addr add "$(addr "$i")/24" dev "p2pdh$i-$$"
    ip -n "$PREFIX-$i" link set "p2pdh$i-$$" up
    ip -n "$PREFIX-$i" link set lo up
done

FILE=$DIR/demo.bin
head -c $((MIB * 1024 * 1024)) /dev/urandom >"$FILE"
WANT=$(sha256sum "$FILE" | cut -d' ' -f1)

echo "host 1 ($(addr 1)): p2p share demo.bin"
# Not through `on`: $! must be the p2p process itself (ip netns exec becomes it).
P2P_STATE_DIR=$DIR/state-1 ip netns exec "$PREFIX-1" "$P2P" share "$FILE" \
    >"$DIR/share.out" 2>"$DIR/share.err" &
SHARER=$!
PIDS+=("$SHARER")
for _ in $(seq 1 $((WAIT_S * 10))); do
    TICKET=$(grep -m1 '^p2p2:' "$DIR/share.out" || true)
    [[ -n $TICKET ]] && break
    kill -0 "$SHARER" 2>/dev/null || die "share failed: $(cat "$DIR/share.err")"
    sleep 0.1
done
[[ -n ${TICKET:-} ]] || die "no ticket within ${WAIT_S}s"
echo "ticket: $TICKET"

# get HOST [FLAGS...]: p2p get TICKET on HOST, in the background; its output, exit status
# and end time under $DIR.
get() {
    local host=$1
    shift
    mkdir -p "$DIR/out-$host"
    rm -f "$DIR/done-$host"
    (
        status=0
        on "$host" "$P2P" get "$TICKET" -o "$DIR/out-$host/" "$@" \
            >"$DIR/get-$host.out" 2>"$DIR/get-$host.err" || status=$?
        echo "$status $(date +%s.%N)" >"$DIR/done-$host"
    ) &
}

# check HOST PID START: waits for HOST's get; prints its time and whether its copy is exact.
check() {
    local host=$1 pid=$2 start=$3 status end took
    wait "$pid" || true
    read -r status end <"$DIR/done-$host"
    took=$(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.2f", e - s }')
    local got=""
    [[ -f $DIR/out-$host/demo.bin ]] && got=$(sha256sum "$DIR/out-$host/demo.bin" | cut -d' ' -f1)
    if [[ $status == 0 && $got == "$WANT" ]]; then
        printf "  host %-3s %-14s %8s s  exact\n" "$host" "$(addr "$host")" "$took"
    else
        printf "  host %-3s %-14s %8s s  FAILED (exit %s)\n" "$host" "$(addr "$host")" "$took" "$status"
        sed 's/^/    /' "$DIR/get-$host.err" >&2
        FAILED=1
    fi
}

FAILED=0
echo "hosts 2..$HOSTS: p2p get TICKET (host 2 with --seed: it stays when the sharer leaves)"
START=$(date +%s.%N)
GETTERS=()
for i in $(seq 2 "$HOSTS"); do
    if [[ $i == 2 ]]; then get "$i" --seed; SEEDER=$!; PIDS+=("$SEEDER"); else get "$i"; GETTERS+=("$i:$!"); fi
done
for entry in "${GETTERS[@]}"; do check "${entry%%:*}" "${entry##*:}" "$START"; done
for _ in $(seq 1 $((WAIT_S * 10))); do
    [[ -f $DIR/out-2/demo.bin ]] && grep -q '^seeding' "$DIR/get-2.err" && break
    sleep 0.1
done
if [[ $(sha256sum "$DIR/out-2/demo.bin" 2>/dev/null | cut -d' ' -f1) == "$WANT" ]]; then
    printf "  host %-3s %-14s %8s    exact, seeding\n" 2 "$(addr 2)" ""
else
    echo "  host 2: no exact copy"; FAILED=1
fi

echo "the sharer (host 1) leaves; host $HOSTS gets the file again with the same ticket"
kill "$SHARER"
wait "$SHARER" 2>/dev/null || true
rm -f "$DIR/out-$HOSTS/demo.bin"
START=$(date +%s.%N)
get "$HOSTS"
check "$HOSTS" $! "$START"
grep -E 'LAN|earlier run' "$DIR/get-$HOSTS.err" | sed 's/^/    /' || true

if [[ $FAILED == 0 ]]; then
    echo "all copies exact: $(( HOSTS - 1 )) hosts from the sharer, then 1 after it left"
else
    die "some copies failed (see above)"
fi
