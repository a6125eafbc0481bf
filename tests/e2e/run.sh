#!/usr/bin/env bash
# End-to-end suite on a real LXD: prepare LXD (idempotent), build, run.
#
#   bash tests/e2e/run.sh [extra args for the test binary]
#
# 1. tests/e2e/setup-lxd.sh: installs/starts/initialises LXD and imports the
#    ldm-busybox and ldm-debian images where missing (as root; through sudo
#    when run as another user); then tests/e2e/setup-incus.sh does the same
#    for Incus beside it (the suite runs on both)
# 2. builds the suite (`cargo test --no-run`), timed apart from the run
# 3. cargo test --locked --test e2e -- --ignored --nocapture --test-threads=1
#    (the suite is #[ignore]d because it needs LXD; --ignored runs it, and an
#    unreachable LXD or a missing image is then a failure)
#
# Prints the wall time of each phase at the end, pass or fail. Environment
# knobs of both scripts pass through (LDM_E2E_KEEP=1 keeps what the suite
# made).
set -euo pipefail
cd "$(dirname "$0")/../.."

now_ms() { date +%s%3N; }
secs() { local ms=$1; printf '%d.%01ds' $((ms / 1000)) $((ms % 1000 / 100)); }

T0=$(now_ms)
PHASES=()
report() {
    local rc=$?
    echo "==> e2e timings:"
    local p
    for p in "${PHASES[@]}"; do echo "    $p"; done
    echo "    total $(secs $(($(now_ms) - T0))) (exit $rc)"
}
trap report EXIT

SUDO=()
if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || { echo "run.sh: setup-lxd.sh needs root, and there is no sudo" >&2; exit 1; }
    SUDO=(sudo --preserve-env=LDM_E2E_PROFILE,LDM_E2E_NETWORK,LDM_E2E_POOL,LDM_E2E_BRIDGE_ADDRESS,LDM_E2E_DEBIAN_ALIAS,LDM_E2E_BUSYBOX_ALIAS,LDM_E2E_IMAGES,LDM_E2E_CACHE,LDM_E2E_MIRROR,LDM_E2E_SUITE,LDM_E2E_INCUS_NETWORK,LDM_E2E_INCUS_BRIDGE_ADDRESS,LDM_E2E_INCUS_LOG)
fi

# Runs one phase, timed; stops at the first failure, timings still printed.
phase() { # NAME CMD...
    local name=$1 t0 rc=0
    shift
    echo "==> e2e: $name"
    t0=$(now_ms)
    "$@" || rc=$?
    PHASES+=("$name $(secs $(($(now_ms) - t0)))$([ $rc = 0 ] || echo " (failed, exit $rc)")")
    return $rc
}

phase setup "${SUDO[@]}" bash tests/e2e/setup-lxd.sh
phase setup-incus "${SUDO[@]}" bash tests/e2e/setup-incus.sh
phase build cargo test --locked --test e2e --no-run
phase suite cargo test --locked --test e2e -- --ignored --nocapture --test-threads=1 "$@"
