"""sd_notify against a real unix datagram socket, as systemd would listen."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamer.sinks.notify import Notifier


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    yield sock, str(path)
    sock.close()


def received(sock: socket.socket) -> list[str]:
    """Every datagram waiting on the socket, decoded."""
    out = []
    sock.setblocking(False)
    try:
        while True:
            out.append(sock.recv(4096).decode())
    except BlockingIOError:
        pass
    finally:
        sock.settimeout(2)
    return out


def test_ready_status_stopping_reach_the_socket(listener) -> None:
    sock, path = listener
    n = Notifier({"NOTIFY_SOCKET": path})
    assert n.enabled
    assert n.ready()
    assert sock.recv(4096) == b"READY=1"
    assert n.status("listening on\n'USB mic'  (hw:1,0)")
    assert sock.recv(4096) == b"STATUS=listening on 'USB mic' (hw:1,0)"  # one line, always
    assert n.stopping()
    assert sock.recv(4096) == b"STOPPING=1"
    assert n.sent == 3


def test_abstract_namespace_socket() -> None:
    name = f"moodstream-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    try:
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert sock.recv(4096) == b"READY=1"
    finally:
        sock.close()


def test_watchdog_interval_is_half_the_timeout(listener) -> None:
    sock, path = listener
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
    assert n.watchdog_interval == pytest.approx(0.1)
    assert n.watchdog() and n.watchdog()
    assert received(sock) == ["WATCHDOG=1", "WATCHDOG=1"]


def test_watchdog_for_another_pid_or_without_timeout_is_off(listener) -> None:
    sock, path = listener
    other = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
    mine = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid())})
    unset = Notifier({"NOTIFY_SOCKET": path})
    garbage = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "soon"})
    assert other.watchdog_interval is None and not other.watchdog()
    assert unset.watchdog_interval is None and not unset.watchdog()
    assert garbage.watchdog_interval is None and not garbage.watchdog()
    assert mine.watchdog()
    assert received(sock) == ["WATCHDOG=1"]


@pytest.mark.parametrize("value", [None, "", "vsock:2:1234", "relative/path"])
def test_without_a_usable_socket_everything_is_a_noop(value) -> None:
    env = {} if value is None else {"NOTIFY_SOCKET": value}
    n = Notifier(env)
    assert not n.enabled
    assert not (n.ready() or n.status("x") or n.watchdog() or n.stopping())
    assert n.sent == 0


def test_a_vanished_socket_is_logged_once_and_never_raises(tmp_path, caplog) -> None:
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert not n.ready()
    assert not n.status("still here")
    warnings = [r for r in caplog.records if "sd_notify" in r.getMessage()]
    assert len(warnings) == 1
    assert "gone.sock" in warnings[0].getMessage()
