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

ensure_user
install -d -m 0755 "$PREFIX"
CODE_CHANGED=0
install_snapshot
install_venv
install_config
unit_changed=0
install_unit && unit_changed=1
if [ -z "$ROOT" ]; then
    [ "$unit_changed" -eq 0 ] || systemctl_ daemon-reload
    systemctl_ enable --quiet "$NAME.service"
    if [ "$unit_changed" -eq 1 ] || [ "$CODE_CHANGED" -eq 1 ]; then
        systemctl_ restart "$NAME.service" || die "installed and enabled, but it did not start: journalctl -u $NAME"
    else
        systemctl_ start "$NAME.service" || die "installed and enabled, but it did not start: journalctl -u $NAME"
    fi
    [ "$SYSTEMCTL" -eq 0 ] || say "enabled and running: systemctl status $NAME; journalctl -fu $NAME"
else
    systemctl_ enable --quiet "$NAME.service"
fi
