"""The service unit passes systemd's own checks, and the shipped default config is the code's."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from streamer import config

SYSTEMD = Path(__file__).resolve().parent.parent / "systemd"
UNIT = SYSTEMD / "moodstream.service"
EXEC = "/opt/moodstream/venv/bin/moodstream"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed (Debian package: systemd)")


def unit_entries() -> dict[str, list[str]]:
    """``Section.Key`` -> values in order (keys may repeat, so configparser will not do)."""
    out: dict[str, list[str]] = {}
    section = ""
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault(f"{section}.{key}", []).append(value)
    return out


@pytest.fixture
def runnable_unit(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at an executable that exists (verify checks it)."""
    exe = tmp_path / "moodstream"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    unit = tmp_path / "moodstream.service"
    unit.write_text(UNIT.read_text().replace(EXEC, str(exe)))
    return unit


@needs_analyze
def test_systemd_analyze_verify_is_clean(runnable_unit: Path) -> None:
    result = subprocess.run([ANALYZE, "verify", str(runnable_unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr  # no warning of any kind either


@needs_analyze
def test_systemd_analyze_security_rates_it_ok(runnable_unit: Path) -> None:
    result = subprocess.run(
        [ANALYZE, "security", "--offline=yes", "--no-pager", str(runnable_unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    match = re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= 2.0, result.stdout  # 1.6 when written; "OK" is < 4


def test_unit_is_a_watched_notify_service_that_can_open_alsa() -> None:
    u = unit_entries()
    assert u["Service.Type"] == ["notify"]
    assert u["Service.ExecStart"] == [f"{EXEC} run"]
    assert u["Service.Restart"] == ["on-failure"]
    assert u["Service.WatchdogSec"] and u["Service.WatchdogSec"][0] != "0"
    assert u["Service.User"] == ["moodstream"]
    assert u["Service.SupplementaryGroups"] == ["audio"]
    assert u["Service.DevicePolicy"] == ["closed"]
    assert "char-alsa rw" in u["Service.DeviceAllow"]
    assert u["Service.PrivateDevices"] == ["no"]  # yes would hide /dev/snd
    assert "ProcSubset" not in "".join(u)  # pid would hide /proc/asound
    assert u["Service.CapabilityBoundingSet"] == [""]
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "LockPersonality"):
        assert u[f"Service.{key}"] == ["yes"], key
    assert u["Service.ProtectSystem"] == ["strict"]
    assert u["Service.RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]
    assert u["Install.WantedBy"] == ["multi-user.target"]


def test_watchdog_outlasts_the_longest_quiet_spell_of_the_loop() -> None:
    """The loop pings after each hop; the hop and a reconnect backoff must fit well inside."""
    seconds = int(unit_entries()["Service.WatchdogSec"][0].removesuffix("s"))
    defaults = config.Settings()
    assert defaults.model.hop_seconds * 4 <= seconds
    assert defaults.liveness.stall_seconds * 2 <= seconds


KEY_LINE = re.compile(r'(?m)^# (\w+ = (?:"|\[|-?\d|true|false).*)$')


def uncommented(text: str) -> str:
    """The config with every ``# key = value`` line made live."""
    return re.sub(KEY_LINE, r"\1", text)


def test_shipped_config_loads_as_the_code_defaults(tmp_path: Path) -> None:
    text = (SYSTEMD / "config.toml").read_text()
    assert config.load(SYSTEMD / "config.toml") == config.Settings()
    live = tmp_path / "config.toml"
    live.write_text(uncommented(text))
    assert config.load(live) == config.Settings()  # the documented defaults are the real ones


def test_shipped_config_documents_every_key() -> None:
    live = uncommented((SYSTEMD / "config.toml").read_text())
    documented: dict[str, set[str]] = {}
    section = ""
    for line in live.splitlines():
        if m := re.fullmatch(r"\[(\w+)\]", line):
            section = m.group(1)
        elif m := re.fullmatch(r"(\w+) = .+", line):
            documented.setdefault(section, set()).add(m.group(1))
    defaults = config.Settings()
    expected = {
        f.name: {g.name for g in dataclasses.fields(getattr(defaults, f.name))} for f in dataclasses.fields(defaults)
    }
    assert documented == expected
    # ...and each key has a description above it (keys listed together share the one above them)
    lines = (SYSTEMD / "config.toml").read_text().splitlines()
    for i, line in enumerate(lines):
        if KEY_LINE.fullmatch(line):
            j = i - 1
            while j >= 0 and KEY_LINE.fullmatch(lines[j]):
                j -= 1
            assert j >= 0 and lines[j].startswith("# ") and len(lines[j]) > 3, f"key without a description: {line}"


def test_reload_is_a_sighup_and_only_start_up_mistakes_stay_down() -> None:
    """`systemctl reload` sends SIGHUP to the main process, which checks the new configuration and
    runs on with its own when that is wrong (tests/test_adversarial.py: SIGHUP storms, a bad config
    on reload); exit status 2 comes only from start-up, so RestartPreventExitStatus=2 keeps down only
    a service that could not start, and any other exit is restarted."""
    u = unit_entries()
    assert u["Service.ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert u["Service.Restart"] == ["on-failure"]
    assert u["Service.RestartPreventExitStatus"] == ["2"]
    assert u["Unit.StartLimitIntervalSec"] == ["0"]
    stop_s = int(u["Service.TimeoutStopSec"][0].removesuffix("s"))
    from streamer.sinks import history

    assert stop_s / 2 > history.FINAL_WRITE_S + history.WRITE_BUSY_S + 2.0  # the history's last write fits
