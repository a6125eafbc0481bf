#!/usr/bin/env bash
# Runs every fuzz target for ${FUZZ_SECONDS:-30} seconds on stable Rust
# (RUSTC_BOOTSTRAP=1 lets cargo-fuzz use the nightly-only sanitizer flags).
# Installs cargo-fuzz first if it is missing. Exits non-zero if any target
# crashes; the input that crashed it is kept in fuzz/artifacts/TARGET/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-30}
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz/run.sh: installing cargo-fuzz (a few minutes)"
    cargo install cargo-fuzz --locked
fi

# load_store works in a folder named after its pid; remove those of dead runs.
cleanup() {
    for d in /dev/shm/ldm-fuzz-load-* "${TMPDIR:-/tmp}"/ldm-fuzz-load-*; do
        [ -d "$d" ] || continue
        kill -0 "${d##*-}" 2>/dev/null || rm -rf "$d"
    done
}
trap cleanup EXIT

status=0
for target in decode_record load_store; do
    echo "fuzz/run.sh: $target for ${seconds}s"
    # -rss_limit_mb guards against runaway allocation.
    if ! cargo fuzz run "$target" -- -max_total_time="$seconds" -rss_limit_mb=2048; then
        echo "fuzz/run.sh: $target FAILED; see fuzz/artifacts/$target/" >&2
        status=1
    fi
done
exit "$status"
