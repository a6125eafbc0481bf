#!/usr/bin/env bash
# From nothing to a running ldm container, on Debian/Ubuntu as root.
#
# Installs and initialises LXD and builds a local Debian image only where
# missing (tests/e2e/setup-lxd.sh; it says what it does first), installs ldm
# with cargo, then creates a project in ${LDM_DEMO_DIR:-~/ldm-demo} and a
# container `dev` in it. Safe to run again: every step checks first.
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf 'quickstart: %s\n' "$*" >&2; }

if ! command -v cargo >/dev/null; then
    say "cargo is missing: install Rust first (https://rustup.rs), then run this again"
    exit 1
fi
image=${LDM_E2E_DEBIAN_ALIAS:-ldm-debian}
if ! command -v lxc >/dev/null || ! lxc info >/dev/null 2>&1 || ! lxc image info "$image" >/dev/null 2>&1; then
    say "LXD or the local image $image is missing. Next: install and initialise LXD with"
    say "apt (its own storage pool, bridge 198.18.77.1/24 and profile; an existing setup is left"
    say "alone), then build a Debian image with debootstrap (about a minute)."
    bash tests/e2e/setup-lxd.sh >/dev/null
fi

# Mounts: LXD 5.0 here cannot shift ids on a mount, so ldm maps the user's
# uid and gid into containers with raw.idmap, which the kernel's newuidmap
# allows only with root:ID:1 in /etc/subuid and /etc/subgid. Do that once for
# the user who ran sudo (ldm never maps root itself), and put them in group lxd.
user=${LDM_USER_FOR:-${SUDO_USER:-}}
if [ -n "$user" ] && [ "$user" != root ] && id -u "$user" >/dev/null 2>&1; then
    uid=$(id -u "$user"); gid=$(id -g "$user")
    if ! grep -qx "root:$uid:1" /etc/subuid || ! grep -qx "root:$gid:1" /etc/subgid; then
        say "letting LXD map $user's ids into containers (root:$uid:1 in /etc/subuid, root:$gid:1 in /etc/subgid), so project folders mount with the right owners"
        grep -qx "root:$uid:1" /etc/subuid || echo "root:$uid:1" >> /etc/subuid
        grep -qx "root:$gid:1" /etc/subgid || echo "root:$gid:1" >> /etc/subgid
    fi
    id -nG "$user" | tr ' ' '\n' | grep -qx lxd || { say "adding $user to group lxd (log in again to use it)"; usermod -a -G lxd "$user"; }
fi

prefix=${LDM_PREFIX:-$HOME/.local}
say "installing ldm into $prefix/bin (cargo install)"
cargo install --quiet --locked --path . --root "$prefix"
ldm="$prefix/bin/ldm"

dir=${LDM_DEMO_DIR:-$HOME/ldm-demo}
mkdir -p "$dir"
cd "$dir"
[ -f containers.yaml ] || "$ldm" create
if ! "$ldm" list --json | grep -q '"name": "dev"'; then
    "$ldm" container create dev "$image"
fi
"$ldm" list
say "done. Try: cd $dir && $ldm ssh dev"
say "(this demo ran as root, so its folder is not mounted: ldm never maps root into a container; as ${user:-a user in group lxd}, ldm create and ldm container create in a project folder mount it)"
case ":$PATH:" in *":$prefix/bin:"*) ;; *) say "add $prefix/bin to your PATH to type just 'ldm'" ;; esac
