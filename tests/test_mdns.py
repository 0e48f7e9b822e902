"""mDNS advertisement: the real daemon, found by a real zeroconf browser.

Multicast needs a network; the test makes a private one (a network namespace whose loopback
carries multicast and a second address), so it runs the same on a laptop, in CI and in a sandbox, and never
talks to the machine's real network. Where namespaces are not allowed it skips, saying so."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from streamer.audio.sources import FileSource
from streamer.audio.synth import mood_audio
from streamer.config import ServerSettings, Settings, SourceSettings
from streamer.daemon import Daemon
from streamer.model.runner import ModelRunner
from streamer.sinks import mdns

REPO = Path(__file__).resolve().parent.parent
ADDRESS = "10.77.0.1"
# lo with multicast on and a second, non-loopback address that multicast leaves from (a dummy or
# veth interface would need kernel modules that a user namespace cannot load)
NETWORK = (
    f"ip link set lo up multicast on && ip addr add {ADDRESS}/32 dev lo && "
    f"ip route add 224.0.0.0/4 dev lo src {ADDRESS}"
)

# Runs inside the namespace: start the daemon, browse for it, stop it, browse again.
PROBE = r"""
import asyncio, json, os, re, signal, subprocess, sys
from zeroconf import IPVersion, ServiceStateChange
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

TYPE = "_moodstream._tcp.local."

async def browse(zc, seconds):
    found = {}
    def changed(zeroconf, service_type, name, state_change):
        found[name] = state_change.name
    browser = AsyncServiceBrowser(zc.zeroconf, TYPE, handlers=[changed])
    await asyncio.sleep(seconds)
    await browser.async_cancel()
    return found

async def main():
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    daemon = subprocess.Popen(
        [sys.executable, "-m", "streamer.cli", "run", "--source", "demo", "--host", "0.0.0.0", "--port", "0",
         "--model", "4class", *sys.argv[1:]],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    log = []
    while True:
        line = daemon.stderr.readline()
        assert line, "daemon ended: " + "".join(log)
        log.append(line)
        if "listening: open" in line:
            port = int(re.search(r"127\.0\.0\.1:(\d+)/", line)[1])
            break
    zc = AsyncZeroconf(interfaces=[os.environ["PROBE_ADDRESS"]], ip_version=IPVersion.V4Only)
    found = await browse(zc, float(os.environ["PROBE_BROWSE_S"]))
    infos = {}
    for name in found:
        info = AsyncServiceInfo(TYPE, name)
        if await info.async_request(zc.zeroconf, 3000):
            infos[name] = {
                "port": info.port,
                "addresses": info.parsed_addresses(),
                "properties": {k.decode(): (v or b"").decode() for k, v in info.properties.items()},
                "server": info.server,
            }
    removed = {}
    def changed(zeroconf, service_type, name, state_change):
        removed.setdefault(name, []).append(state_change.name)
    browser = AsyncServiceBrowser(zc.zeroconf, TYPE, handlers=[changed])
    await asyncio.sleep(1.0)
    daemon.send_signal(signal.SIGINT)
    rest = await asyncio.to_thread(daemon.stderr.read)
    log.append(rest)
    code = await asyncio.to_thread(daemon.wait, 60)
    await asyncio.sleep(2.0)
    await browser.async_cancel()
    await zc.async_close()
    print(json.dumps({"port": port, "found": infos, "after_stop": removed, "code": code, "log": "".join(log)}))

asyncio.run(main())
"""


def _namespaces_work() -> str | None:
    """None when a private network namespace with a dummy interface can be made here, else why not."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs unshare and ip (util-linux, iproute2)"
    probe = subprocess.run(["unshare", "-rn", "sh", "-c", NETWORK], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"cannot make a private network namespace here: {probe.stderr.strip()}"
    return None


def in_private_network(*daemon_args: str, browse_s: float = 4.0) -> dict:
    why = _namespaces_work()
    if why:
        pytest.skip(why)
    env = {**os.environ, "PROBE_ADDRESS": ADDRESS, "PROBE_BROWSE_S": str(browse_s)}
    env.pop("NOTIFY_SOCKET", None)
    command = f'{NETWORK} && python="$0" probe="$1" && shift && exec "$python" -c "$probe" "$@"'
    result = subprocess.run(
        ["unshare", "-rn", "sh", "-c", command, sys.executable, PROBE, *daemon_args],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_daemon_on_the_network_is_found_with_its_port_address_and_txt_and_says_goodbye() -> None:
    report = in_private_network("--token", "s3cret")
    assert report["code"] == 0, report["log"]
    assert len(report["found"]) == 1, report
    ((name, info),) = report["found"].items()
    assert name.endswith("._moodstream._tcp.local.") and name.startswith("moodstream on ")
    assert info["port"] == report["port"]
    assert info["addresses"] == [ADDRESS]
    props = info["properties"]
    assert props["path"] == "/" and props["token"] == "required" and props["protocol"] == "1"
    assert props["labels"] == "angry,happy,sad,calm" and props["model"].startswith("moodstream-4class")
    assert props["version"]
    assert "s3cret" not in json.dumps(report["found"])  # the token itself is never advertised
    assert report["after_stop"] == {name: ["Added", "Removed"]}, report["log"]  # goodbye when the daemon stops
    assert "mDNS: advertised as" in report["log"]


@pytest.mark.slow
def test_the_setting_turns_it_off() -> None:
    report = in_private_network("--no-mdns", browse_s=3.0)
    assert report["code"] == 0, report["log"]
    assert report["found"] == {} and "mDNS" not in report["log"]


def test_only_a_server_others_can_reach_is_advertised() -> None:
    assert not mdns.wanted(ServerSettings())  # 127.0.0.1: pointless
    assert not mdns.wanted(ServerSettings(host="::1"))
    assert not mdns.wanted(ServerSettings(host="localhost"))
    assert mdns.wanted(ServerSettings(host="0.0.0.0"))
    assert mdns.wanted(ServerSettings(host="192.168.1.20"))
    assert not mdns.wanted(ServerSettings(host="0.0.0.0", mdns=False))
    assert not mdns.wanted(ServerSettings(host="0.0.0.0", enabled=False))


class FakeServer:
    def __init__(self) -> None:
        self.port: int | None = 8765
        self.listening = asyncio.Event()


def test_without_zeroconf_the_daemon_goes_on_and_says_why(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    monkeypatch.setitem(sys.modules, "zeroconf", None)  # import zeroconf -> ImportError
    monkeypatch.setitem(sys.modules, "zeroconf.asyncio", None)
    monkeypatch.setattr(mdns, "advertised_address", lambda host: "192.0.2.10")
    server = FakeServer()
    advertiser = mdns.Advertiser(ServerSettings(host="0.0.0.0"), server, {})

    async def scenario() -> None:
        server.listening.set()
        await asyncio.wait_for(advertiser.run(None, asyncio.Event()), 5)  # type: ignore[arg-type]

    asyncio.run(scenario())
    assert advertiser.stats() == {"mdns_registered": 0, "mdns_failures": 1}
    assert "zeroconf is not installed" in caplog.text


def test_a_server_bound_to_one_address_advertises_that_one() -> None:
    """(A wildcard's address, the multicast route's, is what the namespace test finds.)"""
    assert mdns.advertised_address("192.168.1.20") == "192.168.1.20"
    assert mdns.advertised_address("fe80::1") is None  # IPv4 only


@pytest.mark.parametrize("host, advertised", [("0.0.0.0", True), ("127.0.0.1", False)])
def test_the_daemon_runs_the_advertisement_as_a_sink_and_reports_its_counters_once(
    tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, host: str, advertised: bool
) -> None:
    """Built with the other sinks beyond loopback only; its counters once, in ``counters`` (zeroconf
    is hidden, so nothing reaches the machine's network: the failure is what gets counted)."""
    monkeypatch.setitem(sys.modules, "zeroconf", None)
    monkeypatch.setitem(sys.modules, "zeroconf.asyncio", None)
    clip = tmp_path / "clip.wav"
    sf.write(clip, mood_audio("happy", 3.0), 16000)
    settings = Settings(
        source=SourceSettings(kind="file", path=str(clip)),
        server=ServerSettings(host=host, port=0, token="t"),
    )
    realtime = FileSource(str(clip), 0.1, True)  # paced: the server listens long before the file ends
    daemon = Daemon(settings, ModelRunner(tiny_model), realtime)
    asyncio.run(asyncio.wait_for(daemon.run(asyncio.Event()), 60))
    info = daemon.describe()
    assert [s.name for s in daemon.sinks].count("mdns") == int(advertised)
    assert "mdns_registered" not in info["server"]
    if advertised:
        assert info["counters"]["mdns_registered"] == 0 and info["counters"]["mdns_failures"] == 1
    else:
        assert "mdns_failures" not in info["counters"]
