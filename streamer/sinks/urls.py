"""Where to find a running daemon: the page's URL and the `moodstream watch` line, as logged once
it listens (what a new user looks for after `make run`), and as the LAN installer prints it."""

from __future__ import annotations

import ipaddress
import socket

from streamer.config import ServerSettings

# what `moodstream watch` connects to without an argument: the daemon's default address
WATCH_DEFAULT = (ServerSettings().host, ServerSettings().port)


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine (then nobody else can find it)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]").split("%", 1)[0]).is_loopback
    except ValueError:
        return False


WILDCARDS = ("0.0.0.0", "::", "")


def host_port(host: str, port: int) -> str:
    """``host:port`` as in a URL: an IPv6 address in brackets (``[::]:8765``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def where_to_look(host: str, port: int, token: bool) -> str:
    """One line: the page's URL (from this machine and, when listening on every address, from
    others by the mDNS name <hostname>.local) and the watch command."""
    local = "127.0.0.1" if host in WILDCARDS else host
    query = "?token=…" if token else ""
    page = f"http://{host_port(local, port)}/{query}"
    if host in WILDCARDS:
        page += f" (from other machines: http://{socket.gethostname()}.local:{port}/{query})"
    watch = "moodstream watch" if (local, port) == WATCH_DEFAULT else f"moodstream watch {host_port(local, port)}"
    if token:
        watch = f"MOODSTREAM_TOKEN=… {watch}"
    return f"listening: open {page} in a browser, or run `{watch}` for the dashboard in a terminal"
