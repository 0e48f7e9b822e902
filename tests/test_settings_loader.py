"""One settings loader for every command (streamer.config.from_args): run, watch, mark, history,
evaluate and mqtt-forget read the same config file (--config, else /etc/moodstream/config.toml),
the same environment ($MOODSTREAM_TOKEN, $MOODSTREAM_MQTT_PASSWORD) and then their own flags; so
`moodstream watch` and `mark` on the daemon's machine find its port and token with no argument."""

from __future__ import annotations

import ast
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamer import cli, config

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = {  # each command's required arguments besides --config
    "run": [],
    "watch": [],
    "mark": ["x"],
    "history": [],
    "evaluate": ["data"],
    "mqtt-forget": [],
}


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text('[server]\nport = 9911\ntoken = "from-file"\n[history]\npath = "/x/h.sqlite"\n')
    path.chmod(0o640)
    return path


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_reads_the_file_then_the_environment_then_its_flags(command: str, config_file: Path) -> None:
    parser = cli.build_parser()
    args = parser.parse_args([command, *COMMANDS[command], "--config", str(config_file)])
    settings = config.from_args(args, environ={})
    assert (settings.server.port, settings.server.token, settings.history.path) == (9911, "from-file", "/x/h.sqlite")
    from_env = config.from_args(args, environ={"MOODSTREAM_TOKEN": "from-env", "MOODSTREAM_MQTT_PASSWORD": "pw"})
    assert from_env.server.token == "from-env" and from_env.mqtt.password == "pw"
    if command in ("run", "watch", "mark"):  # the commands that speak to the daemon take --token
        flagged = parser.parse_args([command, *COMMANDS[command], "--config", str(config_file), "--token", "flag"])
        assert config.from_args(flagged, environ={"MOODSTREAM_TOKEN": "from-env"}).server.token == "flag"


def test_no_command_loads_settings_another_way() -> None:
    """Every `config.load` outside streamer/config.py goes through from_args (nothing reads TOML or
    the environment on its own)."""
    for path in sorted((ROOT / "streamer" / "commands").glob("*.py")):
        tree = ast.parse(path.read_text())
        calls = {
            node.func.attr
            for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name) and node.func.value.id in ("config", "config_mod")
        }  # fmt: skip
        assert "load" not in calls, path.name
        environ = [n for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "environ"]
        assert path.name == "run.py" or not environ, f"{path.name} reads os.environ itself"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _moodstream(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MOODSTREAM_", "NOTIFY_SOCKET"))}
    return subprocess.run(
        [sys.executable, "-m", "streamer.cli", *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT, env={**base, "PYTHONPATH": str(ROOT), **(env or {})},
    )  # fmt: skip


@pytest.fixture
def daemon(tmp_path: Path, tiny_model: Path) -> Iterator[tuple[int, Path]]:
    """A daemon whose port and token come from its config file (as the installed service's do)."""
    port = _free_port()
    cfg = tmp_path / "daemon.toml"
    cfg.write_text(f'[server]\nport = {port}\ntoken = "s3cret"\n')
    cfg.chmod(0o640)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MOODSTREAM_", "NOTIFY_SOCKET"))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamer.cli", "run", "--config", str(cfg), "--source", "demo",
         "--model", str(tiny_model), "--hop", "0.5"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    while "listening: open" not in (line := proc.stderr.readline()):
        assert line, "the daemon ended before it listened"
    try:
        yield port, cfg
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)


@pytest.mark.slow
def test_watch_and_mark_find_the_daemon_by_its_config_alone(daemon: tuple[int, Path]) -> None:
    port, cfg = daemon
    marked = _moodstream("mark", "session 1 start", "--config", str(cfg))
    assert (marked.returncode, marked.stdout.strip()) == (0, "marked: session 1 start"), marked.stderr
    by_env = _moodstream("mark", "by env", "--url", f"http://127.0.0.1:{port}/", env={"MOODSTREAM_TOKEN": "s3cret"})
    assert by_env.returncode == 0, by_env.stderr
    watcher = subprocess.Popen(
        [sys.executable, "-m", "streamer.cli", "watch", "--config", str(cfg)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert watcher.stdout is not None
    try:
        seen = [watcher.stdout.readline() for _ in range(3)]  # no terminal: one line per message
    finally:
        watcher.send_signal(signal.SIGINT)
        watcher.communicate(timeout=30)
    assert any(f"ws://127.0.0.1:{port}/: connected" in line for line in seen), seen
    without = _moodstream("mark", "no token", "--url", f"127.0.0.1:{port}")
    assert (
        without.returncode == 2 and "HTTP 401: the daemon needs a token: server.token of its config" in without.stderr
    )


@pytest.mark.slow
@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root and setpriv to be another user"
)
def test_a_user_who_cannot_read_the_service_config_is_told_how_to(daemon: tuple[int, Path]) -> None:
    """The installed config is root:moodstream 640: `moodstream mark` as another user goes on without
    it and says why, and the 401 says where the token is."""
    port, cfg = daemon
    folder = Path(tempfile.mkdtemp())
    try:
        folder.chmod(0o755)
        system = folder / "config.toml"
        shutil.copy(cfg, system)
        system.chmod(0o640)  # owned by root: "nobody" may not read it
        code = (
            "import sys; from pathlib import Path; import streamer.config as c; c.SYSTEM_CONFIG = Path(sys.argv[1]); "
            "from streamer.cli import main; sys.exit(main(sys.argv[2:]))"
        )
        nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        result = _moodstream_code(code, str(system), "mark", "x", "--url", f"127.0.0.1:{port}", user=nobody)
    finally:
        shutil.rmtree(folder)
    assert result.returncode == 2, result.stderr
    assert (
        f"{system} is not readable by this user" in result.stderr and "sudo adduser $USER moodstream" in result.stderr
    )
    assert "the daemon needs a token" in result.stderr


def _moodstream_code(code: str, *args: str, user: list[str]) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("MOODSTREAM_", "NOTIFY_SOCKET"))}
    return subprocess.run(
        [*user, sys.executable, "-c", code, *args],
        capture_output=True, text=True, timeout=60, cwd="/", env={**base, "PYTHONPATH": str(ROOT), "HOME": "/tmp"},
    )  # fmt: skip
