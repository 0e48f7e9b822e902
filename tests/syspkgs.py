"""The system packages some tests need: the list is .ci/packages (which `make test` installs when
run as root, and .ci/run in CI); without one, the tests that need it skip with the reason below,
which names the package and the apt-get line."""

from __future__ import annotations

import ctypes.util
import glob
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def listed() -> list[str]:
    """The packages in .ci/packages."""
    lines = (REPO / ".ci/packages").read_text().splitlines()
    return [word for line in lines for word in line.partition("#")[0].split()]


def reason(what: str, *packages: str) -> str:
    return f"needs {what}: apt-get install -y {' '.join(packages)} (make test installs it when run as root)"


def portaudio() -> str | None:
    """Why live capture cannot work here (None: it can). sounddevice finds the library this way."""
    if ctypes.util.find_library("portaudio") is None:
        return reason("PortAudio for live capture", "libportaudio2")
    return None


def pulse_capture() -> str | None:
    """Why a private PulseAudio server cannot be captured from here through PortAudio (None: it can)."""
    if any(shutil.which(tool) is None for tool in ("pulseaudio", "pactl", "paplay")):
        return reason("PulseAudio", "pulseaudio", "pulseaudio-utils")
    if not glob.glob("/usr/lib/*/alsa-lib/libasound_module_pcm_pulse.so") + glob.glob(
        "/usr/lib/alsa-lib/libasound_module_pcm_pulse.so"
    ):
        return reason("ALSA's pulse device", "libasound2-plugins")
    return portaudio()


def system_venv(python: Path) -> str | None:
    """Why ``python -m venv`` cannot work here (None: it can); Debian splits ensurepip off."""
    if not python.exists():
        return f"needs {python}"
    if subprocess.run([python, "-c", "import ensurepip"], capture_output=True).returncode != 0:
        return reason("venv for the system Python", "python3-venv")
    return None
