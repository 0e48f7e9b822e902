"""A new user's first ten minutes, through the real commands in subprocesses: --version, the
shipped models by short name, where to look once listening, a busy port, and the trainer
without its extra."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import soundfile

from streamer.audio.synth import music
from streamer.model import shipped
from streamer.model.metadata import ModelFileError, read_metadata
from streamer.sinks import urls

REPO = Path(__file__).resolve().parent.parent


def moodstream(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET" and not k.startswith("MOODSTREAM_")}
    return subprocess.run(
        [sys.executable, "-m", "streamer.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def test_version_is_the_projects() -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    result = moodstream("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"moodstream {version}"


def test_models_lists_every_shipped_file_with_the_figures_inside_it() -> None:
    result = moodstream("models")
    assert result.returncode == 0, result.stderr
    blocks = {}  # short name -> its lines (a header, then indented lines)
    for line in result.stdout.splitlines():
        if not line.startswith(" "):
            name = line.split(":")[0].removesuffix(" (default)")
            blocks[name] = [line]
        else:
            blocks[name].append(line)
    files = sorted((REPO / "models").glob("moodstream-*.tflite"))
    assert sorted(blocks) == sorted(f.stem.removeprefix("moodstream-") for f in files) and len(files) >= 4
    assert list(blocks) == sorted(blocks)  # listed by short name: 3class, 3class-musicnn, 4class, ...
    for path in files:
        meta = read_metadata(path)
        block = blocks[path.stem.removeprefix("moodstream-")]
        assert block[0].endswith(": " + ", ".join(meta.labels)), block
        text = "\n".join(block)
        card = shipped.card_of(path.stem.removeprefix("moodstream-"))
        assert f"card: {card.name}" in text and path.name in card.read_text()
        clip = meta.metrics["test"]["int8"]["clip"]  # every shipped file carries its test figures
        assert f"accuracy {clip['accuracy']:.3f}, macro-F1 {clip['macro_f1']:.3f}" in text
        if "room" in meta.metrics:  # the musicnn family's: through the simulated room too
            assert f"through the simulated room macro-F1 {meta.metrics['room']['int8']['clip']['macro_f1']:.3f}" in text
        assert "no test figures" not in text
        assert f"{path.stat().st_size / 1024:.0f} KB" in text and meta.architecture in text
    assert blocks["3class-musicnn-student"][0].startswith("3class-musicnn-student (default):")


def test_models_piped_into_a_reader_that_stops_early_is_quiet() -> None:
    """`moodstream models | true`, a reader gone before the first line (as `head` is after its own):
    the closed pipe ends the command with status 0 and no traceback."""
    command = f"{sys.executable} -m streamer.cli models | true; exit ${{PIPESTATUS[0]}}"
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert (result.returncode, result.stderr) == (0, "")


def test_the_model_card_agrees_with_what_models_reads_from_the_files() -> None:
    """The cards' figures are written by hand-free code too; the files' and the cards' must not drift."""
    card = (REPO / "models/README.md").read_text()
    musicnn = json.loads((REPO / "models/metrics-3class-musicnn.json").read_text())
    for short, path in shipped.shipped().items():
        f1 = read_metadata(path).metrics["test"]["int8"]["clip"]["macro_f1"]
        if shipped.card_of(short).name == "README.md":
            row = next(line for line in card.splitlines() if line.startswith(f"| `moodstream-{short}.tflite`"))
            assert f"| {f1:.3f} |" in row, row
    # the musicnn family's card is written from metrics-*-musicnn.json, as the files' figures are
    student = read_metadata(shipped.shipped()["3class-musicnn-student"]).metrics
    assert student["test"]["int8"]["clip"]["macro_f1"] == musicnn["student"]["evaluate"]["clean/int8"]["macro_f1"]
    assert student["room"]["int8"]["clip"]["macro_f1"] == musicnn["student"]["evaluate"]["room/int8"]["macro_f1"]
    card = (REPO / "models/README-musicnn.md").read_text()
    assert f"{student['test']['int8']['clip']['macro_f1']:.3f}" in card


def test_short_names_resolve_to_the_shipped_files_and_a_wrong_one_lists_them(tmp_path: Path) -> None:
    models = shipped.shipped()
    assert shipped.resolve("4class") == models["4class"]
    assert shipped.resolve("moodstream-3class") == models["3class"]
    assert shipped.resolve("") == models["3class-musicnn-student"]
    own = tmp_path / "4class"  # a file of that name wins over the shipped model
    own.write_bytes(b"")
    assert shipped.resolve(str(own)) == own
    listed = (
        r"\(shipped: 3class, 3class-musicnn, 3class-musicnn-student, 4class, 4class-musicnn, 4class-musicnn-student\)"
    )
    with pytest.raises(ModelFileError, match=r"no shipped model of that name " + listed):
        shipped.resolve("5class")


@pytest.mark.slow
def test_run_with_a_short_model_name_says_where_to_look_once_listening() -> None:
    """`--model 4class` classifies with the 4-class model; the log names the page and `moodstream watch`."""
    proc = _daemon("--source", "demo", "--model", "4class", "--port", "0")
    assert proc.stderr is not None
    try:
        lines = []
        while "listening: open" not in (line := proc.stderr.readline()):
            assert line, "the daemon ended before it listened: " + "".join(lines)
            lines.append(line)
        found = re.search(
            r"open http://127\.0\.0\.1:(\d+)/ in a browser, or run `moodstream watch 127\.0\.0\.1:(\d+)`", line
        )
        assert found and found[1] == found[2] and found[1] != "0", line
        assert any("labels=angry,happy,sad,calm" in x for x in lines), lines
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    assert proc.returncode == 0


def test_where_to_look_names_the_lan_address_and_the_token_without_showing_it() -> None:
    line = urls.where_to_look("0.0.0.0", 8765, token=True)
    assert f"http://{socket.gethostname()}.local:8765/?token=…" in line
    assert "http://127.0.0.1:8765/?token=…" in line and "MOODSTREAM_TOKEN=… moodstream watch`" in line
    assert urls.where_to_look("127.0.0.1", 8765, token=False).endswith(
        "open http://127.0.0.1:8765/ in a browser, or run `moodstream watch` for the dashboard in a terminal"
    )


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port another program listens on (as the service would on 8765)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


@pytest.fixture
def song(tmp_path: Path) -> Path:
    path = tmp_path / "song.wav"
    soundfile.write(path, music(4.0), 16000)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("source", ["demo", "file"])
def test_a_busy_port_names_a_free_one_and_ends_the_start_before_any_event(
    taken_port: int, song: Path, source: str
) -> None:
    spec = ["--source", "demo"] if source == "demo" else ["--source", f"file:{song}", "--realtime"]
    result = moodstream("run", *spec, "--port", str(taken_port), "--jsonl", "-")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""  # not one JSON line first
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith(f"moodstream: cannot listen on 127.0.0.1:{taken_port}"), message
    free = int(re.search(r"`moodstream run --port (\d+) \.\.\.`", message)[1])  # type: ignore[index]
    assert free > taken_port and "another moodstream or the service" in message and "--no-server" in message
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", free))  # the port it names is free


@pytest.mark.slow
def test_a_busy_port_under_make_run_names_the_make_line(taken_port: int) -> None:
    env = dict(os.environ, MOODSTREAM_MAKE_RUN="1")  # what the Makefile's run target sets
    env.pop("NOTIFY_SOCKET", None)
    result = subprocess.run(
        [sys.executable, "-m", "streamer.cli", "run", "--source", "demo", "--port", str(taken_port)],
        capture_output=True, text=True, timeout=120, cwd=REPO, env=env,
    )  # fmt: skip
    assert result.returncode == 1 and re.search(r'`make run RUN_ARGS="--port \d+"`', result.stderr), result.stderr
    assert "MOODSTREAM_MAKE_RUN=1" in (REPO / "Makefile").read_text().split("\nrun:", 1)[1].split("\n\n")[0]


@pytest.mark.slow
def test_a_file_read_as_fast_as_it_decodes_opens_no_server_unless_asked(taken_port: int, song: Path) -> None:
    fast = moodstream("run", "--source", f"file:{song}", "--jsonl", "-", "--port", str(taken_port))
    assert fast.returncode == 0, fast.stderr
    assert [json.loads(line)["type"] for line in fast.stdout.splitlines()].count("emotion") == 4
    assert "open http" not in fast.stderr and "--realtime paces it" in fast.stderr
    served = moodstream("run", "--source", f"file:{song}", "--server", "--port", "0")
    assert served.returncode == 0 and "listening: open http://127.0.0.1:" in served.stderr, served.stderr


BLOCK_TRAIN_EXTRA = """
import importlib.abc, sys
class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {"tensorflow", "keras"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, NotInstalled())
from trainer.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("args", [["DATA", "--out", "OUT"], ["--help"]])
def test_train_without_the_train_extra_is_one_line_naming_it(tmp_path: Path, args: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, "-c", BLOCK_TRAIN_EXTRA, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "moodstream-train: training needs the 'train' extra (tensorflow is not installed): "
        "pip install 'moodstream[train]', or in the checkout `make .venv/.all`"
    ]


def test_the_readme_commands_work_as_written_after_make_run() -> None:
    """`make run` installs into .venv without activating it: the README says how to reach its commands."""
    readme = (REPO / "README.md").read_text()
    assert "source .venv/bin/activate" in readme
    first_command = readme.index("moodstream devices")
    assert readme.index("source .venv/bin/activate") < first_command
    assert "$(VENV)/bin/moodstream run" in (REPO / "Makefile").read_text()  # the venv the README names


def test_the_aarch64_download_line_asks_for_every_tag_the_measured_run_needed() -> None:
    """pip matches --platform tags exactly; ai-edge-litert's aarch64 wheel is manylinux_2_27 only
    (the line was run with pip 26 and Debian's pip 23 against PyPI: it resolves)."""
    from bench.aarch64 import PLATFORMS

    doc = (REPO / "systemd/README.md").read_text()
    line = doc[doc.index("pip download --only-binary=:all:") :].split("```")[0]
    tags = re.findall(r"--platform (\S+)", line)
    assert set(tags) == set(PLATFORMS) and "manylinux_2_27_aarch64" in tags
    assert "--python-version 3.11" in line and "'.[pi]'" in line and "'setuptools>=77'" in line


@pytest.mark.slow
def test_a_first_run_on_the_demo_logs_in_one_format_says_where_to_look_once_and_what_plays() -> None:
    """No line in another format (LiteRT's own "INFO: Created TensorFlow Lite XNNPACK delegate"),
    "listening" once (not websockets' "server listening" beside ours), then the demo's first line."""
    proc = _daemon("--source", "demo", "--port", "0")
    assert proc.stderr is not None
    lines: list[str] = []
    try:
        while "demo: moodstream plays" not in (line := proc.stderr.readline()):
            assert line, "the daemon ended early: " + "".join(lines)
            lines.append(line)
    finally:
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=60)
    lines += [line, *rest.splitlines(keepends=True)]
    ours = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) [\w.]+: ")
    assert [x for x in lines if not ours.match(x)] == []
    assert sum("listening: open http://" in x or "server listening" in x for x in lines) == 1, lines
    assert 'now playing "happy" (bright major pop' in line
    assert proc.returncode == 0


def _daemon(*args: str) -> subprocess.Popen[str]:
    """`moodstream run ARGS` outside any service manager, its log on a pipe."""
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    cmd = [sys.executable, "-m", "streamer.cli", "run", *args]
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
