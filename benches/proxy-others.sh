#!/usr/bin/env bash
# One-way throughput (MiB/s) of ldm's proxy beside other user-space TCP
# forwarders, in the setup of `cargo bench --bench proxy`: a sink on
# 127.0.0.2 and the client as separate processes. Needs socat and haproxy
# (apt-get install socat haproxy); a missing one is skipped.
# Usage: bash benches/proxy-others.sh [ROUNDS] [MiB]
set -euo pipefail
rounds=${1:-5} mib=${2:-1024}
cd "$(dirname "$0")/.."
bin=$(cargo bench --bench proxy --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "proxy" and m.get("executable"):
        print(m["executable"])')
tmp=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
start() { # NAME CMD... : start a role, wait for its address line
    local name=$1; shift
    "$@" >"$tmp/$name" & pids+=($!)
    for _ in $(seq 50); do [ -s "$tmp/$name" ] && break; sleep 0.1; done
}
start sink "$bin" --role sink
sink=$(head -1 "$tmp/sink")
targets=("direct=$sink")
start ldm "$bin" --role proxy "${sink##*:}"
targets+=("ldm=$(head -1 "$tmp/ldm")")
if command -v socat >/dev/null; then
    socat TCP-LISTEN:46001,bind=127.0.0.1,fork,reuseaddr "TCP:$sink" 2>/dev/null & pids+=($!)
    targets+=("socat=127.0.0.1:46001")
fi
if command -v haproxy >/dev/null; then
    printf 'global\n nbthread 2\ndefaults\n mode tcp\n timeout connect 5s\n timeout client 60s\n timeout server 60s\nfrontend f\n bind 127.0.0.1:46002\n default_backend b\nbackend b\n server s %s\n' "$sink" >"$tmp/haproxy.cfg"
    haproxy -f "$tmp/haproxy.cfg" & pids+=($!)
    targets+=("haproxy=127.0.0.1:46002")
fi
sleep 0.5
declare -A runs
for _ in $(seq "$rounds"); do
    for t in "${targets[@]}"; do
        runs[${t%%=*}]+="$("$bin" --role client "${t#*=}" "$mib") "
    done
done
printf '%-10s %10s %8s   (median of %s runs of %s MiB, one way)\n' forwarder MiB/s ratio "$rounds" "$mib"
direct=$(tr ' ' '\n' <<<"${runs[direct]}" | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
for t in "${targets[@]}"; do
    n=${t%%=*}
    m=$(tr ' ' '\n' <<<"${runs[$n]}" | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
    awk -v n="$n" -v m="$m" -v d="$direct" 'BEGIN { printf "%-10s %10s %7.1f%%\n", n, m, 100 * m / d }'
done
