#!/usr/bin/env bash
# Checks Cargo.lock (and fuzz/Cargo.lock) against the RustSec advisory
# database with cargo-audit: any advisory (a vulnerability, and with
# --deny warnings also an unmaintained, unsound or yanked crate) fails.
# The database is a fresh clone when GitHub answers, else the snapshot kept
# in .ci/advisory-db.tar.gz (its date is printed: .ci/advisory-db.txt).
# Needs cargo-audit on PATH (`cargo install cargo-audit --locked`).
set -euo pipefail
cd "$(dirname "$0")/.."
db=$(mktemp -d /tmp/ldm-advisory-db.XXXXXX)
trap 'rm -rf "$db"' EXIT
if timeout 30 git clone -q --depth 1 https://github.com/rustsec/advisory-db "$db/fresh" 2>/dev/null; then
    dir=$db/fresh
    echo "advisories: a fresh clone of rustsec/advisory-db ($(git -C "$dir" log -1 --format=%cI))"
else
    dir=$db/snapshot
    mkdir -p "$dir"
    tar -xzf .ci/advisory-db.tar.gz -C "$dir"
    echo "advisories: GitHub is out of reach; the snapshot of $(sed -n 's/^date: *//p' .ci/advisory-db.txt) in .ci/advisory-db.tar.gz"
fi
rc=0
for lock in Cargo.lock fuzz/Cargo.lock; do
    echo "advisories: $lock"
    cargo audit --db "$dir" --no-fetch --stale --deny warnings --file "$lock" || rc=1
done
exit $rc
