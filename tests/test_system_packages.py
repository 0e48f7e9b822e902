""".ci/system-packages, which `make test` and .ci/run call: as root it installs what .ci/packages
lists and is missing; otherwise it prints the one apt-get line. dpkg-query and apt-get are stand-ins
here (the test must not install anything on the machine it runs on); the script is the real one."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests import syspkgs

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / ".ci/system-packages"


def tools(tmp_path: Path, installed: set[str], apt_fails: bool = False) -> dict[str, str]:
    """A PATH whose dpkg-query knows ``installed`` and whose apt-get logs its calls to ``apt.log``."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "dpkg-query").write_text(
        "#!/bin/sh\n"
        'for last; do :; done\ncase " $INSTALLED " in *" $last "*) echo "install ok installed"; exit 0;; esac\n'
        "exit 1\n"
    )
    (bin_dir / "apt-get").write_text(f'#!/bin/sh\necho "$*" >> {tmp_path}/apt.log\nexit {int(apt_fails)}\n')
    for tool in ("dpkg-query", "apt-get"):
        (bin_dir / tool).chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "INSTALLED": " ".join(sorted(installed))}


def run(env: dict[str, str], *args: str, as_user: bool = False) -> subprocess.CompletedProcess[str]:
    command = [str(SCRIPT), *args]
    if as_user:
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)


def test_the_list_is_the_one_both_entry_points_use() -> None:
    packages = syspkgs.listed()
    assert {"libportaudio2", "pulseaudio", "pulseaudio-utils", "libasound2-plugins", "chromium"} <= set(packages)
    assert ".ci/system-packages" in (REPO / "Makefile").read_text()
    assert ".ci/system-packages --strict" in (REPO / ".ci/run").read_text()
    assert "packages=(" not in (REPO / ".ci/run").read_text()  # no second list


def test_skip_reasons_name_packages_of_the_list() -> None:
    listed = set(syspkgs.listed())
    for package in ("libportaudio2", "pulseaudio", "pulseaudio-utils", "libasound2-plugins"):
        assert package in listed
    assert syspkgs.reason("PortAudio", "libportaudio2").startswith("needs PortAudio: apt-get install -y libportaudio2")


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="runs the script as root (it installs as root only)")


@needs_root
def test_as_root_it_installs_exactly_what_is_missing(tmp_path: Path) -> None:
    env = tools(tmp_path, installed={"python3-venv", "systemd"})
    result = run(env)
    assert result.returncode == 0, result.stderr
    calls = (tmp_path / "apt.log").read_text().splitlines()
    missing = [p for p in syspkgs.listed() if p not in {"python3-venv", "systemd"}]
    assert calls == ["update -qq", "install -y -qq --no-install-recommends " + " ".join(missing)]


@needs_root
def test_make_bench_installs_its_own_list_the_same_way(tmp_path: Path) -> None:
    """The emulated Raspberry Pi run's tools come from .ci/bench-packages, through the same script."""
    result = run(tools(tmp_path, installed={"debootstrap"}), ".ci/bench-packages")
    assert result.returncode == 0, result.stderr
    calls = (tmp_path / "apt.log").read_text().splitlines()
    assert calls == ["update -qq", "install -y -qq --no-install-recommends qemu-user-static"]
    assert result.stderr.startswith("make bench: installing qemu-user-static")
    assert "@.ci/system-packages .ci/bench-packages" in (REPO / "Makefile").read_text().split("\nbench:", 1)[1]


@needs_root
def test_nothing_missing_installs_nothing(tmp_path: Path) -> None:
    result = run(tools(tmp_path, installed=set(syspkgs.listed())))
    assert result.returncode == 0 and result.stderr == "" and result.stdout == ""
    assert not (tmp_path / "apt.log").exists()


@needs_root
def test_a_failed_install_warns_but_fails_only_when_strict(tmp_path: Path) -> None:
    env = tools(tmp_path, installed=set(), apt_fails=True)
    lenient = run(env)
    assert lenient.returncode == 0 and "could not install" in lenient.stderr
    assert run(env, "--strict").returncode == 1


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv to act as a plain user"
)
def test_a_plain_user_gets_the_one_apt_get_line() -> None:
    public = Path(tempfile.mkdtemp(prefix="moodstream-syspkgs-"))  # the stand-in tools, reachable by nobody
    try:
        public.chmod(0o755)
        env = tools(public, installed={"python3-venv", "systemd", "chromium"})
        result = run(env, as_user=True)
        installed_anything = (public / "apt.log").exists()
    finally:
        shutil.rmtree(public)
    assert result.returncode == 0, result.stderr
    missing = [p for p in syspkgs.listed() if p not in {"python3-venv", "systemd", "chromium"}]
    assert result.stderr.splitlines() == [
        "make test: missing system packages; the tests that need them are skipped. For every test:",
        "    sudo apt-get install -y " + " ".join(missing),
    ]
    assert not installed_anything


def test_a_missing_package_is_a_skip_reason_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a bare machine sees: each missing piece named with its apt-get line."""
    monkeypatch.setattr(syspkgs.ctypes.util, "find_library", lambda name: None)
    assert syspkgs.portaudio() == (
        "needs PortAudio for live capture: apt-get install -y libportaudio2 (make test installs it when run as root)"
    )
    monkeypatch.setattr(syspkgs.glob, "glob", lambda pattern: ["/usr/lib/x/alsa-lib/libasound_module_pcm_pulse.so"])
    monkeypatch.setattr(syspkgs.shutil, "which", lambda tool: None if tool == "paplay" else f"/usr/bin/{tool}")
    assert "apt-get install -y pulseaudio pulseaudio-utils" in (syspkgs.pulse_capture() or "")
    monkeypatch.setattr(syspkgs.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    assert "libportaudio2" in (syspkgs.pulse_capture() or "")  # PulseAudio alone cannot be captured from
    monkeypatch.setattr(syspkgs.glob, "glob", lambda pattern: [])
    assert "apt-get install -y libasound2-plugins" in (syspkgs.pulse_capture() or "")
