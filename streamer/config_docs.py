"""The settings' documentation, written from their declarations in streamer/config.py.

``python -m streamer.config_docs`` rewrites the README's TOML blocks (the sections of
README_SECTIONS: add a new section there if the README should show it) and systemd/config.toml
(every section); tests/test_config.py fails when either differs from what this module makes.
"""

from __future__ import annotations

import json
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

from streamer.config import Bounds, declared

ROOT = Path(__file__).resolve().parent.parent
README_SECTIONS = (("source", "model", "smoothing", "gate", "output", "liveness"), ("server",), ("mqtt",), ("history",))
COMMENT_COLUMN = 25
CONFIG_FILE_HEADER = """\
# moodstream configuration: /etc/moodstream/config.toml (installed once by systemd/install.sh,
# never overwritten by it). Every key is listed with its default, commented out: uncomment a line
# and change the value to override it, then `sudo systemctl restart moodstream`.
# An unknown key, a value of the wrong type or out of its bounds stops the service with a message
# naming the key (`journalctl -u moodstream`); `moodstream run --config FILE` shows the same message
# at once. Command-line flags of `moodstream run` override this file.
# (Written by `python -m streamer.config_docs` from streamer/config.py: edit the declarations there.)
"""


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, tuple)):
        return json.dumps(list(value) if isinstance(value, tuple) else value)
    return repr(value)


def readme_block(sections: tuple[str, ...]) -> str:
    """A TOML block of the defaults of ``sections``, one comment per key."""
    lines: list[str] = []
    section_now = ""
    for section, _, f in declared():
        if section not in sections:
            continue
        if section != section_now:
            lines += [""] * bool(lines) + [f"[{section}]"]
            section_now = section
        assignment = f"{f.name} = {toml_value(f.default)}"
        comment = f.metadata["help"] + (f" ({f.metadata['bounds']})" if f.metadata["bounds"] else "")
        lines.append(f"{assignment.ljust(COMMENT_COLUMN - 1)} # {comment}")
    return "\n".join(lines) + "\n"


def config_file() -> str:
    """systemd/config.toml: every key with its longer description and bounds, commented out."""
    out = [CONFIG_FILE_HEADER.rstrip("\n")]
    section_now = ""
    for section, _, f in declared():
        if section != section_now:
            out += ["", f"[{section}]"]
            section_now = section
        bounds: Bounds | None = f.metadata["bounds"]
        doc = f.metadata["doc"] + (f" Allowed: {bounds}." if bounds else "")
        out += textwrap.wrap(doc, 100, initial_indent="# ", subsequent_indent="# ", break_on_hyphens=False)
        out.append(f"# {f.name} = {toml_value(f.default)}")
    return "\n".join(out) + "\n"


def updated_readme(text: str) -> str:
    """The README with each settings block replaced by the generated one (matched by its first table)."""
    for sections in README_SECTIONS:
        pattern = re.compile(rf"```toml\n\[{sections[0]}\]\n.*?```", re.S)
        text, n = pattern.subn(f"```toml\n{readme_block(sections)}```".replace("\\", "\\\\"), text, count=1)
        if n != 1:
            raise SystemExit(f"README.md has no ```toml block starting with [{sections[0]}]")
    return text


def main() -> int:
    readme = ROOT / "README.md"
    readme.write_text(updated_readme(readme.read_text(encoding="utf-8")), encoding="utf-8")
    (ROOT / "systemd" / "config.toml").write_text(config_file(), encoding="utf-8")
    print("wrote README.md (settings blocks) and systemd/config.toml", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
