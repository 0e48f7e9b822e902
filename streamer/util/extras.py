"""How to add one of moodstream's extras (``plot``, ``train``) where this code runs.

In a checkout (pyproject.toml beside the code) the answer is the editable install with the extra,
by this very interpreter: a plain ``pip install '.[plot]'`` would replace the editable install with
a copy. Installed from a wheel, it is the extra's own packages, read from the installed metadata:
moodstream is not on the package index, so ``pip install 'moodstream[plot]'`` would look for it there.
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]


def install_hint(extra: str, checkout: Path = CHECKOUT) -> str:
    """The one command that installs ``extra`` for this interpreter."""
    pip = f"{sys.executable} -m pip install"
    if (checkout / "pyproject.toml").is_file():
        return f"{pip} -e '{checkout}[{extra}]'"
    marker = re.compile(rf"""extra\s*==\s*["']{re.escape(extra)}["']""")
    wanted = [r.split(";")[0].strip() for r in importlib.metadata.requires("moodstream") or [] if marker.search(r)]
    return f"{pip} " + " ".join(f"'{r}'" for r in wanted)
