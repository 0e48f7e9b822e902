"""Read or set keys of /etc/moodstream/config.toml for the installer, keeping every comment.

    configedit.py get FILE SECTION KEY [DEFAULT]      print the value (when unset: DEFAULT, else the
                                                      default the shipped config.toml states)
    configedit.py set FILE SECTION KEY=VALUE...       set string values in SECTION

`set` replaces the key's line in its section, else uncomments the first commented-out line of
that key there (the shipped config lists every key that way), else adds the line under the
section's header (or a new section at the end). The result must parse as TOML and hold the new
values, or the file is left as it was; it is replaced atomically, keeping its mode and owner.
Standard library only: the installer runs it with the system's Python before any venv exists.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import tomllib
from pathlib import Path

HEADER = re.compile(r"^\s*\[([^\[\]]+)\]\s*(#.*)?$")


def section_span(lines: list[str], section: str) -> tuple[int, int] | None:
    """(header line index, end index) of a [section], or None."""
    start = None
    for i, line in enumerate(lines):
        match = HEADER.match(line)
        if match and start is not None:
            return start, i
        if match and match[1].strip() == section:
            start = i
    return None if start is None else (start, len(lines))


def set_keys(text: str, section: str, values: dict[str, str]) -> str:
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    if section_span(lines, section) is None:
        lines += ["\n", f"[{section}]\n"]
    for key, value in values.items():
        start, end = section_span(lines, section)  # type: ignore[misc]
        new = f"{key} = {json.dumps(value)}\n"  # TOML basic strings take JSON's escapes
        active = re.compile(rf"^\s*{re.escape(key)}\s*=")
        commented = re.compile(rf"^\s*#\s*{re.escape(key)}\s*=")
        body = range(start + 1, end)
        where = next((i for i in body if active.match(lines[i])), None)
        if where is None:
            where = next((i for i in body if commented.match(lines[i])), None)
        if where is None:
            lines.insert(start + 1, new)
        else:
            lines[where] = new
    result = "".join(lines)
    parsed = tomllib.loads(result).get(section, {})
    for key, value in values.items():
        if parsed.get(key) != value:
            raise ValueError(f"[{section}] {key} would not read back as {value!r}")
    return result


def write_like(path: Path, text: str) -> None:
    """Replace ``path`` atomically with ``text``, keeping its mode and owner."""
    st = path.stat()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(tmp, st.st_mode & 0o7777)
        if os.geteuid() == 0:
            os.chown(tmp, st.st_uid, st.st_gid)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def shipped_default(section: str, key: str) -> str:
    """The default of a key as the shipped config.toml beside this file states it (``# key = value``,
    written from the settings' declarations), so that the installer repeats no default of its own."""
    lines = (Path(__file__).with_name("config.toml")).read_text(encoding="utf-8").splitlines()
    start, end = section_span(lines, section) or (0, 0)
    for line in lines[start:end]:
        match = re.match(rf"^#\s*{re.escape(key)}\s*=\s*(.+)$", line.strip())
        if match:
            return str(tomllib.loads(f"v = {match[1]}")["v"])
    raise ValueError(f"no default for [{section}] {key} in the shipped config.toml")


def main(argv: list[str]) -> int:
    try:
        if len(argv) in (4, 5) and argv[0] == "get":
            file, section, key = argv[1:4]
            table = tomllib.loads(Path(file).read_text(encoding="utf-8")).get(section, {})
            print(table[key] if key in table else argv[4] if len(argv) == 5 else shipped_default(section, key))
            return 0
        if len(argv) >= 4 and argv[0] == "set" and all("=" in a for a in argv[3:]):
            path, section = Path(argv[1]), argv[2]
            values = {k: v for k, _, v in (a.partition("=") for a in argv[3:])}
            old = path.read_text(encoding="utf-8")
            new = set_keys(old, section, values)
            if new == old:
                return 0
            write_like(path, new)
            print("changed")
            return 0
    except (OSError, ValueError, tomllib.TOMLDecodeError) as exc:
        print(f"configedit: {exc}", file=sys.stderr)
        return 1
    print("usage:\n" + "\n".join(__doc__.splitlines()[2:4]), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
