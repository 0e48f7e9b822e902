"""systemd/install.sh run for real into a temporary root: idempotent, never clobbers a config,
uninstalls cleanly."""

from __future__ import annotations

import hashlib
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from streamer import config
from streamer.config import Settings
from tests import syspkgs
from tests.buildenv import MIN_SETUPTOOLS, SYSTEM_PYTHON, setuptools_dir, setuptools_only_path

REPO = Path(__file__).resolve().parent.parent
SNAPSHOT = ("pyproject.toml", "README.md", "streamer", "trainer", "models", "systemd")
IS_ROOT = os.geteuid() == 0
CAN_ADD_USERS = IS_ROOT and shutil.which("useradd") is not None
NO_SYSTEM_VENV = syspkgs.system_venv(SYSTEM_PYTHON)  # why the venv step cannot be tried here, if so


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A frozen copy of the files the installer takes (the real tree changes under our feet)."""
    dest = tmp_path / "checkout"
    for name in SNAPSHOT:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            dest.mkdir(exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def fake_root(tmp_path: Path) -> Path:
    """A root with just the account databases useradd needs (an audio group, as on a Pi)."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (root / "etc/group").write_text("root:x:0:\naudio:x:29:\n")
    (root / "etc/shadow").write_text("root:*:19000:0:99999:7:::\n")
    (root / "etc/gshadow").write_text("root:*::\naudio:*::\n")
    for name in ("shadow", "gshadow"):
        (root / "etc" / name).chmod(0o640)
    return root


def install(checkout: Path, root: Path, *args: str) -> str:
    user = () if CAN_ADD_USERS else ("--no-user",)
    systemctl = () if shutil.which("systemctl") else ("--no-systemctl",)
    result = subprocess.run(
        [str(checkout / "systemd/install.sh"), "--root", str(root), "--no-pip", *user, *systemctl, *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def snapshot(root: Path) -> dict[str, tuple]:
    """Everything about every path under root that an installer could change."""
    out = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        if path.is_symlink():
            what = ("link", os.readlink(path))
        elif path.is_file():
            what = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
        else:
            what = ("dir",)
        out[str(path.relative_to(root))] = (*what, st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns)
    return out


def test_installing_twice_changes_nothing(tmp_path: Path, checkout: Path) -> None:
    root = fake_root(tmp_path)
    first_out = install(checkout, root)
    first = snapshot(root)
    second_out = install(checkout, root)
    assert snapshot(root) == first
    assert "installed" in first_out
    changed = [line for line in second_out.splitlines() if "unchanged" not in line]
    assert changed == [], second_out

    unit = root / "etc/systemd/system/moodstream.service"
    assert unit.read_bytes() == (checkout / "systemd/moodstream.service").read_bytes()
    conf = root / "etc/moodstream/config.toml"
    assert conf.read_bytes() == (checkout / "systemd/config.toml").read_bytes()
    assert conf.stat().st_mode & 0o777 == 0o640  # may hold the WebSocket token
    src = root / "opt/moodstream/src"
    assert (src / "streamer/sinks/notify.py").read_bytes() == (checkout / "streamer/sinks/notify.py").read_bytes()
    assert not list(src.rglob("__pycache__"))
    if shutil.which("systemctl"):
        wants = root / "etc/systemd/system/multi-user.target.wants/moodstream.service"
        assert os.readlink(wants) == "/etc/systemd/system/moodstream.service"
    if CAN_ADD_USERS:
        passwd = (root / "etc/passwd").read_text()
        user = next(line for line in passwd.splitlines() if line.startswith("moodstream:"))
        assert user.endswith(":/nonexistent:/usr/sbin/nologin")
        uid, gid = int(user.split(":")[2]), int(user.split(":")[3])
        assert uid < 1000  # a system user
        assert "audio:x:29:moodstream" in (root / "etc/group").read_text()
        assert conf.stat().st_gid == gid  # readable by the service through its group


def test_an_existing_config_is_never_overwritten_and_a_changed_unit_is_updated(tmp_path: Path, checkout: Path) -> None:
    root = fake_root(tmp_path)
    conf = root / "etc/moodstream/config.toml"
    conf.parent.mkdir(parents=True)
    conf.write_text("[server]\nport = 9000\n")
    unit = root / "etc/systemd/system/moodstream.service"
    unit.parent.mkdir(parents=True)
    unit.write_text("[Service]\nExecStart=/bin/old\n")
    out = install(checkout, root)
    assert conf.read_text() == "[server]\nport = 9000\n"
    assert "never overwritten" in out
    assert unit.read_bytes() == (checkout / "systemd/moodstream.service").read_bytes()


def test_a_changed_checkout_replaces_the_snapshot(tmp_path: Path, checkout: Path) -> None:
    root = fake_root(tmp_path)
    install(checkout, root)
    stale = root / "opt/moodstream/src/streamer/stale.py"
    stale.write_text("# left over from an older version\n")
    (checkout / "streamer/new.py").write_text("# a new module\n")
    out = install(checkout, root)
    assert f"installed {root}/opt/moodstream/src" in out
    assert not stale.exists()
    assert (root / "opt/moodstream/src/streamer/new.py").exists()


def test_uninstall_keeps_the_config_unless_purged(tmp_path: Path, checkout: Path) -> None:
    root = fake_root(tmp_path)
    install(checkout, root)
    out = install(checkout, root, "--uninstall")
    assert not (root / "etc/systemd/system/moodstream.service").exists()
    assert not (root / "etc/systemd/system/multi-user.target.wants/moodstream.service").is_symlink()
    assert not (root / "opt/moodstream").exists()
    assert (root / "etc/moodstream/config.toml").exists()
    assert "--purge" in out
    install(checkout, root, "--uninstall", "--purge")
    assert not (root / "etc/moodstream").exists()
    assert "moodstream:" not in (root / "etc/passwd").read_text()
    install(checkout, root, "--uninstall", "--purge")  # nothing left to remove: still fine


def test_bad_options_and_a_missing_root_say_what_to_do(checkout: Path) -> None:
    script = str(checkout / "systemd/install.sh")
    bad = subprocess.run([script, "--frobnicate"], capture_output=True, text=True)
    assert bad.returncode != 0
    assert "unknown option --frobnicate" in bad.stderr
    usage = subprocess.run([script, "--help"], capture_output=True, text=True)
    assert usage.returncode == 0 and "--root DIR" in usage.stdout and "--uninstall" in usage.stdout
    if IS_ROOT and shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: cannot try the installer as a plain user")
    as_user: list[str] = []
    if IS_ROOT:  # drop to nobody, with a copy of the script where nobody can read it
        public = Path(tempfile.mkdtemp(prefix="moodstream-install-"))
        public.chmod(0o755)
        shutil.copy2(script, public / "install.sh")
        script = str(public / "install.sh")
        as_user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    try:
        plain = subprocess.run([*as_user, script], capture_output=True, text=True, cwd="/")
    finally:
        if as_user:
            shutil.rmtree(Path(script).parent)
    assert plain.returncode != 0 and "run as root" in plain.stderr, plain.stderr


@pytest.mark.slow
@pytest.mark.skipif(NO_SYSTEM_VENV is not None, reason=str(NO_SYSTEM_VENV))
@pytest.mark.skipif(
    setuptools_dir() is None, reason=f"needs setuptools>={MIN_SETUPTOOLS} in this venv to build offline"
)
def test_the_venv_step_installs_the_snapshot_and_runs_pip_only_once(tmp_path: Path, checkout: Path) -> None:
    root = fake_root(tmp_path)
    venv = root / "opt/moodstream/venv"
    # The one offline concession: the build sees this venv's setuptools, and pip gets --no-deps.
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", venv], check=True)
    env = {
        "MOODSTREAM_PIP_ARGS": "--no-deps --no-build-isolation --no-index",
        "PYTHONPATH": str(setuptools_only_path(tmp_path / "build-path")),
    }
    args = ["--python", str(SYSTEM_PYTHON)]

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [checkout / "systemd/install.sh", "--root", root, "--no-user", "--no-systemctl", *args],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, **env},
        )

    first = run()
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"installed {venv}" in first.stdout
    before = snapshot(root)
    second = run()
    assert second.returncode == 0, second.stderr
    assert f"unchanged {venv}" in second.stdout
    assert snapshot(root) == before
    entry = venv / "bin/moodstream"
    assert entry.exists()
    where = subprocess.run(
        [venv / "bin/python", "-c", "import streamer.sinks.notify as n; print(n.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=True,
    )
    # editable from the snapshot: the shipped models/ next to the code are found at run time
    assert where.stdout.strip() == str(root / "opt/moodstream/src/streamer/sinks/notify.py")


def _can_unshare_mounts() -> bool:
    if not IS_ROOT or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _can_unshare_mounts(), reason="needs root and mount namespaces (unshare -m)")
def test_on_a_live_system_it_enables_starts_and_restarts_only_on_change(tmp_path: Path, checkout: Path) -> None:
    """The real paths (/opt, /etc), inside a private mount namespace over copies, with a
    systemctl that records its calls: what a Pi would see, without touching this machine."""
    etc = tmp_path / "etc"
    shutil.copytree("/etc", etc, symlinks=True, ignore_dangling_symlinks=True)
    fake = tmp_path / "bin"
    fake.mkdir()
    calls = tmp_path / "calls"
    (fake / "systemctl").write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    (fake / "systemctl").chmod(0o755)
    script = checkout / "systemd/install.sh"
    steps = [
        f"{script} --no-pip --no-user",
        f"{script} --no-pip --no-user",  # nothing changed: start (a no-op when running)
        f"echo '# changed' >> {checkout}/streamer/sinks/notify.py",
        f"{script} --no-pip --no-user",  # new code: restart
        f"{script} --uninstall",
        "echo ==listing==; ls /opt /etc/systemd/system /etc/moodstream",
    ]
    result = subprocess.run(
        [
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-euc",
            # /run/systemd/system: systemd runs (the installer checks it before writing anything)
            f"mount -t tmpfs opt /opt; mount --bind {etc} /etc; mount -t tmpfs run /run; "
            "mkdir -p /run/systemd/system; " + "; ".join(steps),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert calls.read_text().splitlines() == [
        "daemon-reload",
        "enable --quiet moodstream.service",
        "restart moodstream.service",
        "enable --quiet moodstream.service",
        "start moodstream.service",
        "enable --quiet moodstream.service",
        "restart moodstream.service",
        "disable --now moodstream.service",
        "daemon-reload",
    ]
    listing = result.stdout.split("==listing==")[-1]
    assert "moodstream.service" not in listing and "config.toml" in listing  # config kept
    assert not Path("/opt/moodstream").exists() and not Path("/etc/moodstream").exists()


# --lan, --device, and the checks made before anything is written


def config_of(root: Path) -> Settings:
    """The installed config as the daemon reads it."""
    return config.load(root / "etc/moodstream/config.toml")


def test_lan_lets_the_network_in_with_a_fresh_token_and_prints_the_address(tmp_path: Path, checkout: Path) -> None:
    root = fake_root(tmp_path)
    (root / "etc/hostname").write_text("moodpi\n")
    out = install(checkout, root, "--lan")
    settings = config_of(root)
    assert settings.server.host == "0.0.0.0" and settings.server.mdns
    token = settings.server.token
    assert re.fullmatch(r"[A-Za-z0-9_-]{32}", token)  # 24 random bytes, URL-safe
    assert f"http://moodpi.local:8765/?token={token}" in out
    conf = root / "etc/moodstream/config.toml"
    assert conf.stat().st_mode & 0o777 == 0o640
    # every other line is the shipped one: only the two keys changed
    shipped = (checkout / "systemd/config.toml").read_text().splitlines()
    changed = [(a, b) for a, b in zip(shipped, conf.read_text().splitlines(), strict=True) if a != b]
    assert changed == [('# host = "127.0.0.1"', 'host = "0.0.0.0"'), ('# token = ""', f'token = "{token}"')]

    again = install(checkout, root, "--lan")  # the token clients know is kept
    assert config_of(root).server.token == token
    assert "unchanged [server] host token" in again and f"?token={token}" in again


def test_lan_keeps_a_token_and_port_the_user_chose(tmp_path: Path, checkout: Path) -> None:
    root = fake_root(tmp_path)
    conf = root / "etc/moodstream/config.toml"
    conf.parent.mkdir(parents=True)
    conf.write_text('[source]\ndevice = "USB"\n\n[server]\nport = 9000\ntoken = "mine"\n')
    out = install(checkout, root, "--lan")
    settings = config_of(root)
    assert (settings.server.host, settings.server.port, settings.server.token) == ("0.0.0.0", 9000, "mine")
    assert settings.source.device == "USB"
    assert ".local:9000/?token=mine" in out


def test_device_flag_sets_the_capture_device_and_nothing_else(tmp_path: Path, checkout: Path) -> None:
    root = fake_root(tmp_path)
    install(checkout, root)
    before = (root / "etc/moodstream/config.toml").read_text()
    out = install(checkout, root, "--device", 'USB "Mic"')
    assert config_of(root).source.device == 'USB "Mic"'
    assert "set [source] device" in out
    after = (root / "etc/moodstream/config.toml").read_text()
    assert len(after.splitlines()) == len(before.splitlines())
    assert "unchanged [source] device" in install(checkout, root, "--device", 'USB "Mic"')


def devices_listing(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> str:
    """What `moodstream devices` prints, from the real command over a stand-in PortAudio."""
    from streamer.audio import sources
    from streamer.commands import devices as command
    from tests.fakesd import FakeSoundDevice

    devices = [
        {"name": "Built-in Output", "max_input_channels": 0, "default_samplerate": 48000.0},
        {"name": "USB Mic, USB Audio (hw:1,0)", "max_input_channels": 2, "default_samplerate": 48000.0},
        {"name": "pulse", "max_input_channels": 32, "default_samplerate": 44100.0},
    ]
    monkeypatch.setattr(sources, "sounddevice_module", lambda: FakeSoundDevice(devices, rates=(16000, 48000)))
    assert command.main(None) == 0  # type: ignore[arg-type]
    return capsys.readouterr().out


def on_a_terminal(command: list[str], answer: str, prompt: str = "capture device") -> str:
    """Run ``command`` with a pseudo-terminal as stdin and stdout; answer the prompt; return the output."""
    master, slave = os.openpty()
    proc = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    seen = b""
    answered = False
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1.0)
        if not ready:
            if proc.poll() is not None:
                break
            continue
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the other end is closed
            break
        if not chunk:
            break
        seen += chunk
        if not answered and prompt.encode() in seen:
            os.write(master, answer.encode() + b"\n")
            answered = True
    os.close(master)
    assert proc.wait(timeout=60) == 0, seen.decode(errors="replace")
    return seen.decode(errors="replace")


def test_an_interactive_install_offers_the_inputs_and_stores_the_chosen_name(
    tmp_path: Path, checkout: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = fake_root(tmp_path)
    listing = tmp_path / "devices.txt"
    listing.write_text(devices_listing(monkeypatch, capsys))
    fake = root / "opt/moodstream/venv/bin/moodstream"  # --no-pip: the venv is not built here
    fake.parent.mkdir(parents=True)
    fake.write_text(f'#!/bin/sh\n[ "$1" = devices ] && exec cat {listing}\nexit 64\n')
    fake.chmod(0o755)
    user = () if CAN_ADD_USERS else ("--no-user",)
    command = [str(checkout / "systemd/install.sh"), "--root", str(root), "--no-pip", "--no-systemctl", *user]
    out = on_a_terminal(command, "1")
    assert "USB Mic, USB Audio (hw:1,0)" in out and "pulse" in out  # the list was shown
    assert config_of(root).source.device == "USB Mic, USB Audio (hw:1,0)"  # the name, not the index
    # a device already set is not asked for again
    again = on_a_terminal(command, "2")
    assert "unchanged [source] device" in again and config_of(root).source.device.startswith("USB Mic")


@pytest.mark.skipif(not _can_unshare_mounts(), reason="needs root and mount namespaces (unshare -m)")
def test_without_systemd_it_stops_before_writing_anything(tmp_path: Path, checkout: Path) -> None:
    etc = tmp_path / "etc"
    shutil.copytree("/etc", etc, symlinks=True, ignore_dangling_symlinks=True)
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "systemctl").write_text("#!/bin/sh\nexit 0\n")  # the command is there, systemd does not run
    (fake / "systemctl").chmod(0o755)
    result = subprocess.run(
        [
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-uc",
            f"mount -t tmpfs opt /opt; mount --bind {etc} /etc; mount -t tmpfs run /run; "
            f"{checkout}/systemd/install.sh --no-pip; echo rc=$?; ls -A /opt /etc/systemd/system",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"},
    )
    assert "rc=1" in result.stdout, result.stdout + result.stderr
    assert "systemd is not running here" in result.stderr and "nothing was written" in result.stderr
    assert "moodstream" not in result.stdout.split("rc=1")[-1]  # no /opt/moodstream, no unit
    assert not (etc / "moodstream").exists()
    assert (etc / "passwd").read_bytes() == Path("/etc/passwd").read_bytes()  # no user either


@pytest.mark.skipif(
    not (IS_ROOT and shutil.which("setpriv")), reason="needs root and setpriv to act as the service user"
)
def test_a_python_the_service_user_cannot_run_is_refused_before_writing(tmp_path: Path, checkout: Path) -> None:
    """Like a pyenv under /root: fine for root, closed to the service user."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    python = private / "python3"
    shutil.copy2(os.path.realpath(SYSTEM_PYTHON if SYSTEM_PYTHON.exists() else sys.executable), python)
    root = fake_root(tmp_path)
    before = snapshot(root)
    result = subprocess.run(
        [str(checkout / "systemd/install.sh"), "--root", str(root), "--no-systemctl", "--python", str(python)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"the service user cannot run {python}" in result.stderr and "--python /usr/bin/python3" in result.stderr
    assert snapshot(root) == before
