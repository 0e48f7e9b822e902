"""One declaration per setting (streamer/config.py): its bounds are enforced, its flag and help are
made from it, and the README's TOML blocks and systemd/config.toml are written from it."""

from __future__ import annotations

import argparse
import dataclasses
import math
from pathlib import Path
from typing import Any

import pytest

from streamer import cli, config, config_docs
from streamer.config import ConfigError, ModelSettings, Settings, SourceSettings, block_seconds_for

ROOT = Path(__file__).resolve().parent.parent
REGENERATE = "run `python -m streamer.config_docs` to write it from streamer/config.py"


def numeric_settings() -> list[tuple[str, str, config.Bounds]]:
    return [(s, f.name, f.metadata["bounds"]) for s, kind, f in config.declared() if kind in (int, float)]


def test_systemd_config_toml_is_written_from_the_declarations() -> None:
    assert (ROOT / "systemd/config.toml").read_text() == config_docs.config_file(), REGENERATE


def test_the_readme_settings_blocks_are_written_from_the_declarations() -> None:
    readme = (ROOT / "README.md").read_text()
    assert config_docs.updated_readme(readme) == readme, REGENERATE
    for sections in config_docs.README_SECTIONS:
        assert config_docs.readme_block(sections) in readme


def test_every_number_has_bounds_and_a_declaration_without_them_is_refused() -> None:
    assert len(numeric_settings()) >= 15 and all(b is not None for _, _, b in numeric_settings())
    with pytest.raises(TypeError, match="needs bounds"):
        config.setting(1.0, "a number without bounds")


@pytest.mark.parametrize(("section", "key", "bounds"), numeric_settings(), ids=lambda v: str(v))
def test_values_outside_the_bounds_are_refused_by_name(section: str, key: str, bounds: config.Bounds) -> None:
    kind = type(getattr(getattr(Settings(), section), key))
    step = 1 if kind is int else max(1e-6, (bounds.hi - bounds.lo) * 1e-6)
    for value in (bounds.lo - step, bounds.hi + step):
        with pytest.raises(ConfigError, match=rf"^{section}\.{key}: must be"):
            config.from_dict({section: {key: kind(value)}}).validate()
    edges = [bounds.lo] if bounds.hi_open else [bounds.lo, bounds.hi]
    if bounds.hi_open:
        with pytest.raises(ConfigError, match=rf"^{section}\.{key}"):
            config.from_dict({section: {key: kind(bounds.hi)}}).validate()
    for value in edges:  # the edges themselves are allowed (another key's check may still object)
        try:
            config.from_dict({section: {key: kind(value)}}).validate()
        except ConfigError as exc:
            assert f"{section}.{key}: must be {bounds}," not in str(exc)


@pytest.mark.parametrize(
    ("toml", "needle"),
    [
        ("[source]\nblock_seconds = 1e10\n", "source.block_seconds"),  # was a ZeroDivisionError
        ("[source]\nblock_seconds = 1e-300\n", "source.block_seconds"),  # was accepted
        ("[source]\nrate = 0\n", "source.rate"),
        ("[server]\nmax_message_bytes = 10000000000\n", "server.max_message_bytes"),
        ("[liveness]\nstall_seconds = 1e-9\n", "liveness.stall_seconds"),
        ("[smoothing]\nswitch_margin = 1.0\n", "smoothing.switch_margin"),
        ("a = " + "[" * 30_000 + "]" * 30_000 + "\n", "nested too deeply"),  # was a RecursionError
        ("a = " + "{b=" * 9_000 + "1" + "}" * 9_000 + "\n", "nested too deeply"),
        ("a = " + "[" * 100_000 + "]" * 100_000 + "\n", "larger than 64 KiB"),
        ("# " + "x" * 70_000 + "\n", "larger than 64 KiB"),
    ],
    ids=[
        "block-huge",
        "block-tiny",
        "rate-zero",
        "frame-huge",
        "stall-tiny",
        "margin-one",
        "deep",
        "deep-tables",
        "deep-big",
        "big",
    ],
)
def test_bad_settings_exit_2_with_the_key_and_no_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], toml: str, needle: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(toml)
    assert cli.main(["run", "--config", str(path), "--no-server"]) == 2
    err = capsys.readouterr().err
    assert "configuration error" in err and needle in err and "Traceback" not in err
    assert len(err.splitlines()) == 1


def test_every_block_within_bounds_splits_the_hop(tmp_path: Path) -> None:
    for hop in (config.MIN_HOP_SECONDS, 0.3, config.RING_SECONDS):
        for longest in (0.005, 0.25, 2.0):
            settings = Settings(source=SourceSettings(block_seconds=longest), model=ModelSettings(hop_seconds=hop))
            block = block_seconds_for(settings)
            assert 0 < block <= longest + 1e-12 and math.isclose(hop / block, round(hop / block))


def _run_parser() -> argparse.ArgumentParser:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices["run"]


def test_every_flag_comes_from_its_declaration_with_default_and_bounds_in_its_help() -> None:
    parser = _run_parser()
    flagged = [(s, f) for s, _, f in config.declared() if f.metadata["flag"]]
    assert len(flagged) >= 20
    by_flag = {opt: a for a in parser._actions for opt in a.option_strings}
    for section, f in flagged:
        action = by_flag[f.metadata["flag"]]
        assert f"[{section}.{f.name}]" in action.help and action.default is None
        if f.metadata["bounds"] is not None:
            assert str(f.metadata["bounds"]) in action.help and f"default: {f.default}" in action.help


def _flag_value(kind: Any, f: dataclasses.Field[Any]) -> tuple[list[str], Any]:
    """Arguments that set ``f`` to a value other than its default, and that value."""
    flag = f.metadata["flag"]
    if kind is bool:
        return [flag], not f.default
    if f.metadata["choices"]:
        value = next(c for c in f.metadata["choices"] if c != f.default)
        return [flag, value], value
    if kind in (int, float):
        bounds = f.metadata["bounds"]
        value = kind(bounds.lo) if bounds.lo != f.default else kind(bounds.hi)
        return [flag, str(value)], value
    if kind is str:
        return [flag, "x"], "x"
    return [flag, "http://a", flag, "http://b"], ["http://a", "http://b"]


def test_each_flag_overrides_its_own_setting_and_nothing_else(tmp_path: Path) -> None:
    parser = _run_parser()
    (tmp_path / "empty.toml").write_text("")
    for section, kind, f in config.declared():
        if not f.metadata["flag"]:
            continue
        args, value = _flag_value(kind, f)
        overrides = config.overrides_from_args(parser.parse_args(args))
        assert overrides == {section: {f.name: value}}, f.metadata["flag"]


def test_evaluate_has_the_flags_of_the_settings_it_uses() -> None:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    options = {opt for a in action.choices["evaluate"]._actions for opt in a.option_strings}
    assert {"--model", "--hop", "--silence-dbfs", "--channel"} <= options and "--port" not in options


def test_a_stall_timeout_no_longer_than_a_capture_block_is_refused() -> None:
    """A healthy input delivers one block per block length: a shorter stall would reopen it forever."""
    with pytest.raises(ConfigError, match=r"^liveness\.stall_seconds: must be longer than a capture block \(1 s"):
        config.from_dict({"liveness": {"stall_seconds": 1.0}}).validate()
    config.from_dict({"liveness": {"stall_seconds": 1.0}, "model": {"hop_seconds": 0.5}}).validate()


def test_every_field_is_declared_with_setting() -> None:
    """A plain ``x: int = 3`` would have no help, no bounds and no documentation."""
    for section, kind, f in config.declared():
        assert f.metadata.get("help"), f"{section}.{f.name}: declare it with config.setting(...)"
        if kind in (int, float):
            assert f.metadata["bounds"] is not None, f"{section}.{f.name}: a number needs bounds"
