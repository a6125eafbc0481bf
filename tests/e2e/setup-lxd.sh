#!/usr/bin/env bash
# Prepare a local LXD for ldm's end-to-end tests.
#
# Idempotent: every step checks first and only does what is missing, so a
# second run takes a couple of seconds and changes nothing.
#
#   0. raise the kernel's inotify limits to LXD's recommended values
#   1. install lxd, lxd-client, iptables, debootstrap, busybox-static (apt)
#   2. start the daemon by hand if none answers (no init system is assumed)
#   3. create a storage pool, bridge and profile of our own (preseed);
#      an existing user's `default` profile / `lxdbr0` are left alone, except
#      that a `default` profile with no devices at all (fresh install) gets a
#      root disk and eth0 so that plain `lxc launch` works too
#   4. build and import two local images (no image server is needed):
#      ldm-busybox (~1 MB, boots in <1 s) and ldm-debian (debootstrap,
#      systemd, sshd, sudo; the tarball is cached)
#
# Progress goes to stderr, one line per step; a key=value summary goes to
# stdout. Must run as root on a Debian-like host.
#
# Knobs (environment):
#   LDM_E2E_PROFILE         profile to create/use              [ldm-e2e]
#   LDM_E2E_NETWORK         bridge to create/use (<=15 chars)  [ldme2e0]
#   LDM_E2E_POOL            dir storage pool to create/use     [ldm-e2e]
#   LDM_E2E_BRIDGE_ADDRESS  bridge ipv4.address                [198.18.77.1/24]
#   LDM_E2E_BUSYBOX_ALIAS   alias of the busybox image         [ldm-busybox]
#   LDM_E2E_DEBIAN_ALIAS    alias of the Debian image          [ldm-debian]
#   LDM_E2E_IMAGES          which images to build              ["busybox debian"]
#   LDM_E2E_CACHE           where built tarballs are cached    [/var/cache/ldm-e2e]
#   LDM_E2E_MIRROR          Debian mirror for debootstrap      [http://deb.debian.org/debian]
#   LDM_E2E_SUITE           Debian suite                       [bookworm]
#   LDM_E2E_LXD_LOG         daemon log file                    [/var/log/lxd-e2e.log]
#   LDM_E2E_FILL_DEFAULT    fill an empty `default` profile    [1]
set -euo pipefail

PROFILE=${LDM_E2E_PROFILE:-ldm-e2e}
NETWORK=${LDM_E2E_NETWORK:-ldme2e0}
POOL=${LDM_E2E_POOL:-ldm-e2e}
BRIDGE_ADDRESS=${LDM_E2E_BRIDGE_ADDRESS:-198.18.77.1/24}
BUSYBOX_ALIAS=${LDM_E2E_BUSYBOX_ALIAS:-ldm-busybox}
DEBIAN_ALIAS=${LDM_E2E_DEBIAN_ALIAS:-ldm-debian}
IMAGES=${LDM_E2E_IMAGES:-busybox debian}
CACHE=${LDM_E2E_CACHE:-/var/cache/ldm-e2e}
MIRROR=${LDM_E2E_MIRROR:-http://deb.debian.org/debian}
SUITE=${LDM_E2E_SUITE:-bookworm}
LXD_LOG=${LDM_E2E_LXD_LOG:-/var/log/lxd-e2e.log}
FILL_DEFAULT=${LDM_E2E_FILL_DEFAULT:-1}

export DEBIAN_FRONTEND=noninteractive
export LC_ALL=C

log() { printf 'setup-lxd: %s\n' "$*" >&2; }
die() { printf 'setup-lxd: error: %s\n' "$*" >&2; exit 1; }

now_ms() { date +%s%3N; }
TIMINGS=()
step_start() { STEP_T0=$(now_ms); }
step_end() { # NAME
    local ms=$(($(now_ms) - STEP_T0))
    TIMINGS+=("$1=$((ms / 1000)).$(printf '%03d' $((ms % 1000)))s")
}
T_START=$(now_ms)

[ "$(id -u)" = 0 ] || die "must run as root"
[ ${#NETWORK} -le 15 ] || die "LDM_E2E_NETWORK '$NETWORK' is longer than 15 characters"

mkdir -p "$CACHE"
exec 9>"$CACHE/.setup.lock"
flock 9

# Does the LXD API object at PATH exist? (exit status only)
api_exists() { lxc query "$1" >/dev/null 2>&1; }

# apt-get update + install PKGS..., output to $CACHE/apt.log (shown on failure).
apt_install() {
    if ! { apt-get update -q && apt-get install -y -q "$@"; } >"$CACHE/apt.log" 2>&1; then
        tail -n 30 "$CACHE/apt.log" >&2
        die "apt-get failed (full log: $CACHE/apt.log)"
    fi
}

# --------------------------------------------------------------------------
# 0. kernel limits for many containers
# --------------------------------------------------------------------------
# Each container's systemd takes inotify instances of the host's budget (the
# default, 128 per user, is shared by every container): with a dozen
# containers running, a new one's PID 1 exits at boot ("Failed to create
# control group inotify object: Too many open files") and the first command
# run in it is killed. Raised to LXD's production values (LXD's
# "production-setup" page) where lower, now and at every boot.
SYSCTL_CONF=/etc/sysctl.d/60-ldm-lxd.conf
raise_limits() {
    local key want have changed=0
    for kv in fs.inotify.max_user_instances=1048576 fs.inotify.max_user_watches=1048576 fs.inotify.max_queued_events=1048576; do
        key=${kv%%=*}; want=${kv#*=}
        have=$(sysctl -n "$key" 2>/dev/null || echo "$want")
        if [ "$have" -lt "$want" ]; then
            [ "$changed" = 1 ] || log "limits: raising the kernel's inotify limits to LXD's recommended values ($SYSCTL_CONF)"
            changed=1
            sysctl -q -w "$key=$want" || log "limits: could not set $key (is this a container?); many containers at once may fail to boot"
            grep -qs "^$key " "$SYSCTL_CONF" || echo "$key = $want" >> "$SYSCTL_CONF"
        fi
    done
}
raise_limits

# --------------------------------------------------------------------------
# 1+2. packages and daemon
# --------------------------------------------------------------------------
daemon_up() {
    command -v lxc >/dev/null 2>&1 && timeout 10 lxc info >/dev/null 2>&1
}

step_start
if daemon_up; then
    log "daemon: already running, not touching it"
else
    PKGS=(lxd lxd-client iptables debootstrap busybox-static)
    missing=()
    for p in "${PKGS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "packages: installing ${missing[*]}"
        apt_install "${PKGS[@]}"
    else
        log "packages: all installed"
    fi
    getent group lxd >/dev/null || { log "daemon: creating group lxd"; groupadd --system lxd; }
    if lxd waitready --timeout 1 >/dev/null 2>&1; then
        log "daemon: already running"
    else
        log "daemon: starting lxd (log: $LXD_LOG)"
        # 9>&-: the daemon must not inherit (and so hold forever) our lock.
        setsid lxd --group lxd --logfile "$LXD_LOG" >/dev/null 2>&1 </dev/null 9>&- &
        lxd waitready --timeout 60 || die "lxd did not become ready; see $LXD_LOG"
    fi
fi
step_end daemon

# Packages the image builds need even when the daemon was already up.
need_tools=()
case " $IMAGES " in *" busybox "*) [ -x /bin/busybox ] || need_tools+=(busybox-static) ;; esac
case " $IMAGES " in *" debian "*) command -v debootstrap >/dev/null || need_tools+=(debootstrap) ;; esac

# --------------------------------------------------------------------------
# 3. storage pool, network, profile (preseed with only what is missing)
# --------------------------------------------------------------------------
step_start
preseed_pools=""
preseed_networks=""
preseed_profiles=""

if api_exists "/1.0/storage-pools/$POOL"; then
    log "pool: $POOL exists"
else
    log "pool: creating $POOL (driver dir)"
    preseed_pools="  - name: $POOL
    driver: dir
    description: ldm end-to-end tests
"
fi

if api_exists "/1.0/networks/$NETWORK"; then
    log "network: $NETWORK exists"
else
    # Refuse to create a second bridge on an address already in use.
    if ip -4 -o addr show 2>/dev/null | grep -q " ${BRIDGE_ADDRESS%/*}/"; then
        die "address ${BRIDGE_ADDRESS%/*} is already on a host interface; set LDM_E2E_BRIDGE_ADDRESS"
    fi
    log "network: creating bridge $NETWORK ($BRIDGE_ADDRESS, no NAT, no firewall, no IPv6)"
    preseed_networks="  - name: $NETWORK
    type: bridge
    description: ldm end-to-end tests
    config:
      ipv4.address: $BRIDGE_ADDRESS
      ipv4.nat: \"false\"
      ipv4.firewall: \"false\"
      ipv6.address: none
"
fi

profile_devices="    devices:
      root:
        type: disk
        path: /
        pool: $POOL
      eth0:
        type: nic
        name: eth0
        network: $NETWORK
"
if api_exists "/1.0/profiles/$PROFILE"; then
    log "profile: $PROFILE exists"
else
    log "profile: creating $PROFILE (root on $POOL, eth0 on $NETWORK)"
    preseed_profiles="  - name: $PROFILE
    description: ldm end-to-end tests
$profile_devices"
fi

if [ "$FILL_DEFAULT" = 1 ] && [ "$PROFILE" != default ] \
    && [ -z "$(lxc profile device list default 2>/dev/null)" ]; then
    log "profile: default has no devices (fresh install): adding root on $POOL, eth0 on $NETWORK"
    preseed_profiles+="  - name: default
    description: Default LXD profile
$profile_devices"
fi

if [ -n "$preseed_pools$preseed_networks$preseed_profiles" ]; then
    preseed=""
    [ -n "$preseed_pools" ] && preseed+="storage_pools:
$preseed_pools"
    [ -n "$preseed_networks" ] && preseed+="networks:
$preseed_networks"
    [ -n "$preseed_profiles" ] && preseed+="profiles:
$preseed_profiles"
    log "init: applying preseed"
    printf '%s' "$preseed" | lxd init --preseed >/dev/null \
        || die "lxd init --preseed failed; preseed was:
$preseed"
else
    log "init: nothing to do"
fi
step_end init

# --------------------------------------------------------------------------
# 4. images
# --------------------------------------------------------------------------
ARCH=$(uname -m)

alias_exists() { api_exists "/1.0/images/aliases/$1"; }

ensure_tools() {
    if [ ${#need_tools[@]} -gt 0 ]; then
        log "packages: installing ${need_tools[*]} (image build)"
        apt_install "${need_tools[@]}"
        need_tools=()
    fi
}

write_metadata() { # DIR OS RELEASE DESCRIPTION [with-templates]
    local dir=$1
    {
        echo "architecture: $ARCH"
        echo "creation_date: $(date +%s)"
        echo "properties:"
        echo "  architecture: $ARCH"
        echo "  os: $2"
        echo "  release: \"$3\""
        echo "  description: \"$4\""
        if [ "${5:-}" = with-templates ]; then
            echo "templates:"
            echo "  /etc/hostname:"
            echo "    when: [create, copy, rename]"
            echo "    template: hostname.tpl"
            echo "  /etc/hosts:"
            echo "    when: [create, copy, rename]"
            echo "    template: hosts.tpl"
        fi
    } >"$dir/metadata.yaml"
}

build_busybox() { # TARBALL
    local out=$1 work
    work=$(mktemp -d "$CACHE/busybox.XXXXXX")
    local r=$work/rootfs
    mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,run,root,var/run,usr/share/udhcpc}
    chmod 1777 "$r/tmp"
    cp /bin/busybox "$r/bin/busybox"
    local applet
    for applet in $("$r/bin/busybox" --list-full); do
        [ -e "$r/$applet" ] || ln -s /bin/busybox "$r/$applet"
    done
    cat >"$r/etc/inittab" <<'EOF'
::sysinit:/bin/mount -t proc proc /proc
::sysinit:/bin/hostname -F /etc/hostname
::sysinit:/sbin/ip link set lo up
::sysinit:/sbin/udhcpc -b -i eth0 -s /usr/share/udhcpc/default.script
::restart:/sbin/init
::shutdown:/bin/umount -a -r
EOF
    cat >"$r/usr/share/udhcpc/default.script" <<'EOF'
#!/bin/sh
# udhcpc hook: assign the lease to $interface.
case "$1" in
deconfig)
    ip -4 addr flush dev "$interface"
    ip link set "$interface" up
    ;;
bound|renew)
    ip -4 addr flush dev "$interface"
    ip addr add "$ip/${mask:-24}" dev "$interface"
    if [ -n "$router" ]; then
        ip route del default 2>/dev/null
        ip route add default via "${router%% *}" dev "$interface"
    fi
    ;;
esac
exit 0
EOF
    chmod 755 "$r/usr/share/udhcpc/default.script"
    echo busybox >"$r/etc/hostname"
    printf '127.0.0.1 localhost\n' >"$r/etc/hosts"
    printf 'root:x:0:0:root:/root:/bin/sh\n' >"$r/etc/passwd"
    printf 'root:x:0:\n' >"$r/etc/group"
    : >"$r/etc/resolv.conf"
    mkdir -p "$work/templates"
    echo '{{ container.name }}' >"$work/templates/hostname.tpl"
    printf '127.0.0.1 localhost\n127.0.1.1 {{ container.name }}\n' >"$work/templates/hosts.tpl"
    write_metadata "$work" busybox "$("$r/bin/busybox" | head -1 | awk '{print $2}')" \
        "ldm e2e busybox" with-templates
    tar --numeric-owner -C "$work" -czf "$out.tmp" metadata.yaml templates rootfs
    mv "$out.tmp" "$out"
    rm -rf "$work"
}

build_debian() { # TARBALL
    local out=$1 work
    work=$(mktemp -d "$CACHE/debian.XXXXXX")
    local r=$work/rootfs
    log "image: debootstrap $SUITE from $MIRROR (about a minute)"
    if ! debootstrap --variant=minbase \
        --include=bash,passwd,sudo,openssh-server,iproute2,ifupdown,isc-dhcp-client,systemd-sysv \
        "$SUITE" "$r" "$MIRROR" >"$work.debootstrap.log" 2>&1; then
        tail -n 30 "$work.debootstrap.log" >&2
        die "debootstrap failed (full log: $work.debootstrap.log)"
    fi
    rm -f "$work.debootstrap.log"
    cat >"$r/etc/network/interfaces" <<'EOF'
auto lo
iface lo inet loopback

auto eth0
iface eth0 inet dhcp
EOF
    # No resolver is reachable: an empty resolv.conf makes lookups fail at
    # once instead of timing out, and the container's own name resolves from
    # /etc/hosts (templated per container), so sudo does not stall.
    : >"$r/etc/resolv.conf"
    echo debian >"$r/etc/hostname"
    printf '127.0.0.1 localhost\n127.0.1.1 debian\n' >"$r/etc/hosts"
    # Each container gets its own machine-id on first boot.
    : >"$r/etc/machine-id"
    rm -f "$r/var/lib/dbus/machine-id"
    # Slim down.
    chroot "$r" apt-get clean
    rm -rf "$r"/var/lib/apt/lists/* "$r"/var/log/*.log "$r"/var/cache/debconf/*-old
    mkdir -p "$work/templates"
    echo '{{ container.name }}' >"$work/templates/hostname.tpl"
    cat >"$work/templates/hosts.tpl" <<'EOF'
127.0.0.1 localhost
127.0.1.1 {{ container.name }}
::1 localhost ip6-localhost ip6-loopback
EOF
    write_metadata "$work" debian "$SUITE" "ldm e2e Debian $SUITE" with-templates
    log "image: packing Debian rootfs"
    local gz=gzip
    command -v pigz >/dev/null && gz=pigz
    tar --numeric-owner --xattrs -C "$work" -cf - metadata.yaml templates rootfs | $gz -1 >"$out.tmp"
    mv "$out.tmp" "$out"
    rm -rf "$work"
}

ensure_image() { # KIND ALIAS
    local kind=$1 alias=$2 tarball
    if alias_exists "$alias"; then
        log "image: $alias already imported"
        return
    fi
    case $kind in
    busybox) tarball=$CACHE/ldm-busybox-$ARCH.tar.gz ;;
    debian) tarball=$CACHE/ldm-debian-$SUITE-$ARCH.tar.gz ;;
    esac
    if [ -s "$tarball" ]; then
        log "image: using cached $tarball"
    else
        ensure_tools
        log "image: building $kind into $tarball"
        "build_$kind" "$tarball"
    fi
    # The image may be there without this alias (alias deleted or renamed,
    # or a second alias asked for): importing it again would fail with
    # "Image with same fingerprint already exists". A unified tarball's
    # fingerprint is its sha256.
    local fp
    fp=$(sha256sum "$tarball" | cut -d' ' -f1)
    if api_exists "/1.0/images/$fp"; then
        log "image: ${fp:0:12} is already imported; adding the alias $alias"
        lxc image alias create "$alias" "$fp" >/dev/null
        return
    fi
    log "image: importing $tarball as $alias"
    lxc image import "$tarball" --alias "$alias" >/dev/null
}

IMAGE_ALIASES=()
for kind in $IMAGES; do
    case $kind in
    busybox) alias=$BUSYBOX_ALIAS ;;
    debian) alias=$DEBIAN_ALIAS ;;
    *) die "unknown image kind '$kind' in LDM_E2E_IMAGES (busybox, debian)" ;;
    esac
    step_start
    ensure_image "$kind" "$alias"
    step_end "image_$kind"
    IMAGE_ALIASES+=("$alias")
done

# --------------------------------------------------------------------------
# summary (stdout)
# --------------------------------------------------------------------------
total_ms=$(($(now_ms) - T_START))
echo "profile=$PROFILE"
echo "network=$NETWORK"
echo "bridge_address=$BRIDGE_ADDRESS"
echo "pool=$POOL"
echo "images=${IMAGE_ALIASES[*]}"
echo "cache=$CACHE"
for t in "${TIMINGS[@]}"; do echo "time_$t"; done
echo "time_total=$((total_ms / 1000)).$(printf '%03d' $((total_ms % 1000)))s"
