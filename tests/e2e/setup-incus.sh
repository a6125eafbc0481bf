#!/usr/bin/env bash
# Prepare a local Incus beside LXD for ldm's end-to-end tests (issue 24: the
# suite runs its whole lifecycle on both servers).
#
# Idempotent, like setup-lxd.sh: every step checks first and only does what
# is missing, so a second run takes a couple of seconds and changes nothing.
#
#   1. install incus-base and incus-client from Debian's bookworm-backports
#      (Incus 6.0.x; no conflict with LXD 5.0.2, both daemons run at once)
#   2. start incusd by hand if none answers (no init system is assumed)
#   3. create a storage pool, bridge and profile of our own (preseed): a dir
#      pool, a bridge on its own 198.18.x.0/24 without NAT, and a profile
#      named like LXD's, so the suite launches alike on both
#   4. import the same image tarballs setup-lxd.sh built (run it first)
#
# Progress goes to stderr; a key=value summary goes to stdout. Must run as
# root on Debian 12 (bookworm).
#
# Knobs (environment):
#   LDM_E2E_PROFILE               profile to create/use              [ldm-e2e]
#   LDM_E2E_INCUS_NETWORK         bridge to create/use (<=15 chars)  [ldme2e1]
#   LDM_E2E_POOL                  dir storage pool to create/use     [ldm-e2e]
#   LDM_E2E_INCUS_BRIDGE_ADDRESS  bridge ipv4.address                [198.18.78.1/24]
#   LDM_E2E_BUSYBOX_ALIAS         alias of the busybox image         [ldm-busybox]
#   LDM_E2E_DEBIAN_ALIAS          alias of the Debian image          [ldm-debian]
#   LDM_E2E_CACHE                 where setup-lxd.sh cached tarballs [/var/cache/ldm-e2e]
#   LDM_E2E_SUITE                 Debian suite of the image          [bookworm]
#   LDM_E2E_INCUS_LOG             daemon log file                    [/var/log/incus-e2e.log]
set -euo pipefail

PROFILE=${LDM_E2E_PROFILE:-ldm-e2e}
NETWORK=${LDM_E2E_INCUS_NETWORK:-ldme2e1}
POOL=${LDM_E2E_POOL:-ldm-e2e}
BRIDGE_ADDRESS=${LDM_E2E_INCUS_BRIDGE_ADDRESS:-198.18.78.1/24}
BUSYBOX_ALIAS=${LDM_E2E_BUSYBOX_ALIAS:-ldm-busybox}
DEBIAN_ALIAS=${LDM_E2E_DEBIAN_ALIAS:-ldm-debian}
CACHE=${LDM_E2E_CACHE:-/var/cache/ldm-e2e}
SUITE=${LDM_E2E_SUITE:-bookworm}
INCUS_LOG=${LDM_E2E_INCUS_LOG:-/var/log/incus-e2e.log}

export DEBIAN_FRONTEND=noninteractive
export LC_ALL=C

log() { printf 'setup-incus: %s\n' "$*" >&2; }
die() { printf 'setup-incus: error: %s\n' "$*" >&2; exit 1; }

now_ms() { date +%s%3N; }
T_START=$(now_ms)

[ "$(id -u)" = 0 ] || die "must run as root"
[ ${#NETWORK} -le 15 ] || die "LDM_E2E_INCUS_NETWORK '$NETWORK' is longer than 15 characters"

mkdir -p "$CACHE"
exec 9>"$CACHE/.setup-incus.lock"
flock 9

api_exists() { incus query "$1" >/dev/null 2>&1; }

# --------------------------------------------------------------------------
# 1+2. packages and daemon
# --------------------------------------------------------------------------
daemon_up() {
    command -v incus >/dev/null 2>&1 && timeout 10 incus info >/dev/null 2>&1
}

if daemon_up; then
    log "daemon: already running, not touching it"
else
    missing=()
    for p in incus-base incus-client; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        src=/etc/apt/sources.list.d/ldm-bookworm-backports.sources
        if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
            log "apt: adding bookworm-backports ($src)"
            cat >"$src" <<'EOF'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
        fi
        log "packages: installing incus-base incus-client from bookworm-backports"
        if ! { apt-get update -q && apt-get install -y -q -t bookworm-backports \
            --no-install-recommends incus-base incus-client iptables; } >"$CACHE/apt-incus.log" 2>&1; then
            tail -n 30 "$CACHE/apt-incus.log" >&2
            die "apt-get failed (full log: $CACHE/apt-incus.log)"
        fi
    else
        log "packages: all installed"
    fi
    getent group incus-admin >/dev/null || { log "daemon: creating group incus-admin"; groupadd --system incus-admin; }
    log "daemon: starting incusd (log: $INCUS_LOG)"
    mkdir -p "$(dirname "$INCUS_LOG")"
    # 9>&-: the daemon must not inherit (and so hold forever) our lock.
    setsid /usr/libexec/incus/incusd --group incus-admin --logfile "$INCUS_LOG" \
        >/dev/null 2>&1 </dev/null 9>&- &
    incus admin waitready --timeout 60 >&2 || die "incusd did not become ready; see $INCUS_LOG"
fi

# --------------------------------------------------------------------------
# 3. storage pool, network, profile (preseed with only what is missing)
# --------------------------------------------------------------------------
preseed=""
if api_exists "/1.0/storage-pools/$POOL"; then
    log "pool: $POOL exists"
else
    log "pool: creating $POOL (driver dir)"
    preseed+="storage_pools:
  - name: $POOL
    driver: dir
    description: ldm end-to-end tests
"
fi
if api_exists "/1.0/networks/$NETWORK"; then
    log "network: $NETWORK exists"
else
    if ip -4 -o addr show 2>/dev/null | grep -q " ${BRIDGE_ADDRESS%/*}/"; then
        die "address ${BRIDGE_ADDRESS%/*} is already on a host interface; set LDM_E2E_INCUS_BRIDGE_ADDRESS"
    fi
    log "network: creating bridge $NETWORK ($BRIDGE_ADDRESS, no NAT, no firewall, no IPv6)"
    preseed+="networks:
  - name: $NETWORK
    type: bridge
    description: ldm end-to-end tests
    config:
      ipv4.address: $BRIDGE_ADDRESS
      ipv4.nat: \"false\"
      ipv4.firewall: \"false\"
      ipv6.address: none
"
fi
if api_exists "/1.0/profiles/$PROFILE"; then
    log "profile: $PROFILE exists"
else
    log "profile: creating $PROFILE (root on $POOL, eth0 on $NETWORK)"
    preseed+="profiles:
  - name: $PROFILE
    description: ldm end-to-end tests
    devices:
      root:
        type: disk
        path: /
        pool: $POOL
      eth0:
        type: nic
        name: eth0
        network: $NETWORK
"
fi
if [ -n "$preseed" ]; then
    log "init: applying preseed"
    printf '%s' "$preseed" | incus admin init --preseed >/dev/null \
        || die "incus admin init --preseed failed; preseed was:
$preseed"
else
    log "init: nothing to do"
fi

# --------------------------------------------------------------------------
# 4. images: the tarballs setup-lxd.sh built
# --------------------------------------------------------------------------
ARCH=$(uname -m)
ensure_image() { # TARBALL ALIAS
    local tarball=$1 alias=$2 fp
    if api_exists "/1.0/images/aliases/$alias"; then
        log "image: $alias already imported"
        return
    fi
    [ -s "$tarball" ] || die "$tarball is missing: run tests/e2e/setup-lxd.sh first (it builds the images)"
    fp=$(sha256sum "$tarball" | cut -d' ' -f1)
    if api_exists "/1.0/images/$fp"; then
        log "image: ${fp:0:12} is already imported; adding the alias $alias"
        incus image alias create "$alias" "$fp" >/dev/null
        return
    fi
    log "image: importing $tarball as $alias"
    incus image import "$tarball" --alias "$alias" >/dev/null
}
ensure_image "$CACHE/ldm-busybox-$ARCH.tar.gz" "$BUSYBOX_ALIAS"
ensure_image "$CACHE/ldm-debian-$SUITE-$ARCH.tar.gz" "$DEBIAN_ALIAS"

total_ms=$(($(now_ms) - T_START))
echo "incus_version=$(incus version 2>/dev/null | awk '/Server version/ {print $3}')"
echo "incus_profile=$PROFILE"
echo "incus_network=$NETWORK"
echo "incus_bridge_address=$BRIDGE_ADDRESS"
echo "incus_pool=$POOL"
echo "incus_images=$BUSYBOX_ALIAS $DEBIAN_ALIAS"
echo "incus_time_total=$((total_ms / 1000)).$(printf '%03d' $((total_ms % 1000)))s"
