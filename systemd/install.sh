#!/usr/bin/env bash
# Install (or uninstall) moodstream as a systemd service on a Raspberry Pi (or any systemd Linux).
#
#   sudo systemd/install.sh                 install or update, enable and (re)start the service
#   sudo systemd/install.sh --uninstall     stop, disable, remove the unit and /opt/moodstream
#   sudo systemd/install.sh --uninstall --purge    ...and the config, the state dir and the user
#
# What it puts where (all idempotent: a second run changes nothing and says "unchanged"):
#   /opt/moodstream/src     a snapshot of this checkout (the service cannot read /home: ProtectHome)
#   /opt/moodstream/venv    a venv with moodstream[pi] installed from the snapshot (pip runs only
#                           when the snapshot changed)
#   /etc/moodstream/config.toml   the commented default config, never overwritten
#   /etc/systemd/system/moodstream.service, enabled; system user "moodstream" (group audio)
#
# Options:
#   --lan             let the network in: [server] host = "0.0.0.0" and a random token in the
#                     config (a token already there is kept), then print the page's address,
#                     http://<hostname>.local:8765/?token=...; the daemon advertises itself over mDNS
#   --device NAME     the capture device for [source] device (part of its name, see
#                     `moodstream devices`); without it, an interactive install offers the list
#
# Before writing anything it checks that systemd runs here and that the service user can run the
# chosen Python (a pyenv under /root cannot be). It changes an existing config only for --lan
# and --device.
#
# Options for packaging and tests:
#   --root DIR        install into DIR instead of / (like DESTDIR); systemctl runs as
#                     `systemctl --root=DIR enable`, nothing is started
#   --no-systemctl    do not call systemctl at all
#   --no-pip          do not create the venv or run pip
#   --no-user         do not create the system user
#   --python PATH     interpreter for the venv (default python3; needs >= 3.11)
#   MOODSTREAM_PIP_ARGS="..."   extra arguments for pip install (e.g. an index or --no-deps)
set -euo pipefail
umask 022  # the service user must be able to read the venv and the code, whatever root's umask is

NAME=moodstream
CHECKOUT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=""
SYSTEMCTL=1
PIP=1
USER_ADD=1
UNINSTALL=0
PURGE=0
PYTHON=python3
LAN=0
DEVICE=""
DEVICE_GIVEN=0

die() { echo "install.sh: error: $*" >&2; exit 1; }
say() { echo "install.sh: $*"; }

while [ $# -gt 0 ]; do
    case "$1" in
        --root) [ $# -ge 2 ] || die "--root needs a directory"; ROOT=$2; shift ;;
        --root=*) ROOT=${1#--root=} ;;
        --no-systemctl) SYSTEMCTL=0 ;;
        --no-pip) PIP=0 ;;
        --no-user) USER_ADD=0 ;;
        --python) [ $# -ge 2 ] || die "--python needs a path"; PYTHON=$2; shift ;;
        --lan) LAN=1 ;;
        --device) [ $# -ge 2 ] || die "--device needs a name (see: moodstream devices)"; DEVICE=$2; DEVICE_GIVEN=1; shift ;;
        --device=*) DEVICE=${1#--device=}; DEVICE_GIVEN=1 ;;
        --uninstall) UNINSTALL=1 ;;
        --purge) PURGE=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done

if [ -n "$ROOT" ]; then
    mkdir -p "$ROOT" || die "cannot create --root $ROOT"
    ROOT=$(cd "$ROOT" && pwd)
    [ "$ROOT" != / ] || ROOT=""
fi
if [ -z "$ROOT" ] && [ "$(id -u)" -ne 0 ]; then
    die "run as root (sudo $0 $*), or use --root DIR to install into a directory"
fi

PREFIX=$ROOT/opt/$NAME
SRC=$PREFIX/src
VENV=$PREFIX/venv
CONF_DIR=$ROOT/etc/$NAME
CONF=$CONF_DIR/config.toml
UNIT=$ROOT/etc/systemd/system/$NAME.service
STATE_DIR=$ROOT/var/lib/$NAME
# What the service needs from the checkout (setuptools builds streamer and trainer; models ship).
SNAPSHOT=(pyproject.toml README.md streamer trainer models systemd)

CONFIGEDIT=$CHECKOUT/systemd/configedit.py
CONFIG_CHANGED=0

# Before anything is written: this installer makes a systemd service.
require_systemd() {
    [ "$SYSTEMCTL" -eq 1 ] || return 0
    command -v systemctl >/dev/null 2>&1 \
        || die "systemctl not found: this installs a systemd service; nothing was written (--no-systemctl: files only)"
    if [ -z "$ROOT" ] && [ ! -d /run/systemd/system ]; then
        die "systemd is not running here (a container? WSL?); nothing was written (--no-systemctl: files only)"
    fi
}

# The venv's python is a link to $PYTHON, so the service user must be able to run it: a pyenv
# under /root (mode 0700) passes every check as root and fails only when the service starts.
check_python() {
    [ "$PIP" -eq 1 ] || return 0
    local path uid=65534 gid=65534  # nobody, until the service user exists
    path=$(command -v "$PYTHON") || die "--python $PYTHON: not found"
    path=$(readlink -f "$path")
    if [ "$(id -u)" -ne 0 ] || ! command -v setpriv >/dev/null 2>&1; then return 0; fi
    if [ -z "$ROOT" ] && id "$NAME" >/dev/null 2>&1; then uid=$(id -u "$NAME"); gid=$(id -g "$NAME"); fi
    # through sh: setpriv itself still holds root's capabilities when it executes its command
    setpriv --reuid="$uid" --regid="$gid" --clear-groups /bin/sh -c 'exec "$0" -c ""' "$path" >/dev/null 2>&1 \
        || die "the service user cannot run $path (a folder on its way is closed to other users: a pyenv under /root?); nothing was written; use --python with a system-wide Python >= 3.11, e.g. --python /usr/bin/python3"
    PYTHON=$path
}

config_get() { "$PYTHON" "$CONFIGEDIT" get "$CONF" "$@"; }

config_set() {
    local section=$1 out
    shift
    out=$("$PYTHON" "$CONFIGEDIT" set "$CONF" "$section" "$@") || die "could not update $CONF"
    local keys=("${@%%=*}")
    if [ "$out" = changed ]; then
        CONFIG_CHANGED=1
        say "set [$section] ${keys[*]} in $CONF"
    else
        say "unchanged [$section] ${keys[*]} in $CONF"
    fi
}

# --lan: listen on every address with a token (an existing token is kept: clients know it).
configure_lan() {
    [ "$LAN" -eq 1 ] || return 0
    local token
    token=$(config_get server token "")
    [ -n "$token" ] || token=$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(24))')
    config_set server host=0.0.0.0 "token=$token"
}

lan_url() {
    local host port token
    host=$(cat "$ROOT/etc/hostname" 2>/dev/null || hostname)
    port=$(config_get server port)
    token=$(config_get server token "")
    echo "http://$host.local:$port/?token=$token"
}

# [source] device: --device NAME, or on a terminal a choice among the inputs `moodstream devices`
# lists. An index is stored as the device's name: indexes change when USB devices come and go.
choose_device() {
    if [ "$DEVICE_GIVEN" -eq 0 ]; then
        [ -t 0 ] && [ -t 1 ] || return 0
        local current listing
        current=$(config_get source device "")
        if [ -n "$current" ]; then say "unchanged [source] device in $CONF: $current"; return 0; fi
        [ -x "$VENV/bin/$NAME" ] || return 0
        if ! listing=$("$VENV/bin/$NAME" devices 2>&1); then
            say "no capture device to choose from ($listing); the service uses the default input"
            return 0
        fi
        printf '%s\n' "$listing"
        read -r -p "install.sh: capture device for the service (index or part of its name; Enter: the default input): " DEVICE || DEVICE=""
        [ -n "$DEVICE" ] || return 0
        if [[ "$DEVICE" =~ ^[0-9]+$ ]]; then
            local name
            name=$(printf '%s\n' "$listing" | sed -n "s/^[ *] *$DEVICE  \(.*\)  ([0-9]* ch, .*/\1/p" | head -n 1)
            [ -n "$name" ] || die "no input $DEVICE in that list; rerun, or use --device NAME"
            DEVICE=$name
        fi
    fi
    config_set source "device=$DEVICE"
}

systemctl_() {
    [ "$SYSTEMCTL" -eq 1 ] || return 0
    if [ -n "$ROOT" ]; then systemctl --root="$ROOT" "$@"; else systemctl "$@"; fi
}

# Numeric id of a group in the target root (chown by name would look at this machine's groups).
gid_of() { awk -F: -v n="$1" '$1 == n { print $3 }' "$ROOT/etc/group" 2>/dev/null; }

tree_hash() {
    (cd "$1" && find . -name __pycache__ -prune -o -type f -print0 | LC_ALL=C sort -z \
        | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
}

uninstall() {
    if [ -z "$ROOT" ]; then systemctl_ disable --now "$NAME.service" 2>/dev/null || true
    else systemctl_ disable "$NAME.service" 2>/dev/null || true; fi
    if [ -e "$UNIT" ]; then rm -f "$UNIT"; say "removed $UNIT"; fi
    [ -n "$ROOT" ] || systemctl_ daemon-reload
    if [ -e "$PREFIX" ]; then rm -rf "$PREFIX"; say "removed $PREFIX"; fi
    if [ "$PURGE" -eq 1 ]; then
        for path in "$CONF_DIR" "$STATE_DIR"; do
            if [ -e "$path" ]; then rm -rf "$path"; say "removed $path"; fi
        done
        if grep -q "^$NAME:" "$ROOT/etc/passwd" 2>/dev/null; then
            if [ -n "$ROOT" ]; then userdel --root "$ROOT" "$NAME"; else userdel "$NAME"; fi
            say "removed user $NAME"
        fi
    elif [ -e "$CONF" ]; then
        say "kept $CONF and the user $NAME, if any (--purge removes them)"
    fi
}

ensure_user() {
    [ "$USER_ADD" -eq 1 ] || return 0
    if [ ! -e "$ROOT/etc/passwd" ]; then
        say "no $ROOT/etc/passwd: user $NAME not created"
        return 0
    fi
    if grep -q "^$NAME:" "$ROOT/etc/passwd"; then
        say "unchanged user $NAME"
        return 0
    fi
    local args=(--system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin)
    [ -z "$(gid_of audio)" ] || args+=(--groups audio)  # handy for `sudo -u moodstream moodstream devices`
    [ -z "$ROOT" ] || args+=(--root "$ROOT")
    useradd "${args[@]}" "$NAME"
    say "created system user $NAME"
}

install_snapshot() {
    local stage
    stage=$(mktemp -d)
    tar -C "$CHECKOUT" --exclude=__pycache__ --exclude='*.pyc' -cf - "${SNAPSHOT[@]}" \
        | tar -C "$stage" --no-same-owner -xf -
    chmod -R u=rwX,go=rX "$stage"
    chmod 0755 "$stage"
    if [ -d "$SRC" ] && diff -r -q -x __pycache__ "$stage" "$SRC" >/dev/null; then
        say "unchanged $SRC"
    else
        # Copy next to the old one, then swap: a half-copied tree is never live.
        rm -rf "$SRC.new" "$SRC.old"
        cp -a "$stage" "$SRC.new"
        [ ! -e "$SRC" ] || mv "$SRC" "$SRC.old"
        mv "$SRC.new" "$SRC"
        rm -rf "$SRC.old"
        CODE_CHANGED=1
        say "installed $SRC"
    fi
    rm -rf "$stage"
}

install_venv() {
    [ "$PIP" -eq 1 ] || return 0
    local stamp=$VENV/.installed-src want
    want=$(tree_hash "$SRC")
    if [ -x "$VENV/bin/$NAME" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
        say "unchanged $VENV"
        return 0
    fi
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "$PYTHON is older than 3.11 (Raspberry Pi OS bookworm has 3.11; use --python)"
    if [ ! -x "$VENV/bin/python" ]; then
        "$PYTHON" -m venv "$VENV" || die "could not create a venv: apt install python3-venv"
    fi
    # Editable from the snapshot, so the shipped models/ next to the code are found.
    # shellcheck disable=SC2086  # MOODSTREAM_PIP_ARGS is a list of words on purpose
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q ${MOODSTREAM_PIP_ARGS:-} \
        -e "$SRC[pi]" || die "pip install failed (network? piwheels?); rerun when fixed"
    "$VENV/bin/python" -m compileall -q "$SRC/streamer" >/dev/null  # the service cannot write .pyc
    echo "$want" > "$stamp"
    CODE_CHANGED=1
    say "installed $VENV"
}

install_config() {
    local gid
    gid=$(gid_of "$NAME")
    install -d -m 0750 "$CONF_DIR"
    if [ -e "$CONF" ]; then
        say "unchanged $CONF (never overwritten; the default is $SRC/systemd/config.toml)"
    else
        install -m 0640 "$CHECKOUT/systemd/config.toml" "$CONF"
        say "installed $CONF"
    fi
    # The service user reads it through its group; it may hold the WebSocket token.
    if [ -n "$gid" ] && [ "$(id -u)" -eq 0 ]; then chgrp "$gid" "$CONF_DIR" "$CONF"; fi
}

install_unit() {
    install -d -m 0755 "$(dirname "$UNIT")"
    if cmp -s "$CHECKOUT/systemd/$NAME.service" "$UNIT"; then
        say "unchanged $UNIT"
        return 1
    fi
    install -m 0644 "$CHECKOUT/systemd/$NAME.service" "$UNIT"
    say "installed $UNIT"
}

if [ "$UNINSTALL" -eq 1 ]; then
    uninstall
    exit 0
fi

require_systemd
check_python
ensure_user
install -d -m 0755 "$PREFIX"
CODE_CHANGED=0
install_snapshot
install_venv
install_config
configure_lan
choose_device
unit_changed=0
install_unit && unit_changed=1
if [ -z "$ROOT" ]; then
    [ "$unit_changed" -eq 0 ] || systemctl_ daemon-reload
    systemctl_ enable --quiet "$NAME.service"
    if [ "$unit_changed" -eq 1 ] || [ "$CODE_CHANGED" -eq 1 ] || [ "$CONFIG_CHANGED" -eq 1 ]; then
        systemctl_ restart "$NAME.service" || die "installed and enabled, but it did not start: journalctl -u $NAME"
    else
        systemctl_ start "$NAME.service" || die "installed and enabled, but it did not start: journalctl -u $NAME"
    fi
    [ "$SYSTEMCTL" -eq 0 ] || say "enabled and running: systemctl status $NAME; journalctl -fu $NAME"
else
    systemctl_ enable --quiet "$NAME.service"
fi
if [ "$LAN" -eq 1 ]; then
    say "on the network (advertised over mDNS as _moodstream._tcp): $(lan_url)"
fi
