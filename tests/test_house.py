"""The house keeps its shape: no import circles between files, no import that runs back up (the
layers below, lowest first), every package declared for the wheel, and the README's layout table
written from the packages' own docstrings.

Imports are read from the source (every ``import`` statement, also the ones inside functions,
which run later but tie the files just the same)."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("streamer", "trainer", "bench")
# Lowest first. A module may import its own layer and the layers below, never one above; tests
# may import anything, and nothing imports tests.
LAYERS = (
    ("streamer", "streamer.util"),  # the package root holds only the version
    ("streamer.config",),
    ("streamer.features",),
    ("streamer.model",),
    ("streamer.core",),
    ("streamer.audio",),
    ("streamer.sinks",),
    ("streamer.daemon",),
    ("streamer.evaluation",),
    ("streamer.commands",),
    ("streamer.cli", "streamer.config_docs"),
    ("trainer.common",),
    ("trainer.families",),
    ("trainer", "trainer.studies", "trainer.make_models", "trainer.cli", "trainer.__main__"),
    ("bench",),
)
FAMILY_ROOTS = ("trainer.families.family", "trainer.families.registry")


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for file in (ROOT / package).rglob("*.py"):
            name = ".".join(file.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = file
    return found


def imports(found: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the project modules (or tests) it imports, anywhere in its file."""

    def resolve(name: str) -> str | None:
        while name and name not in found:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {}
    for module, file in found.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(file.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                if name.split(".")[0] == "tests":
                    targets.add("tests")
                elif (target := resolve(name)) and target != module:
                    targets.add(target)
        graph[module] = targets
    return graph


def layer_of(module: str) -> int:
    """The layer of a module: the longest layer prefix that names it or a package above it."""
    best, rank = -1, -1
    for i, layer in enumerate(LAYERS):
        for prefix in layer:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, rank = len(prefix), i
    assert rank >= 0, f"{module} is in no layer of tests/test_house.py: place it"
    return rank


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one file (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_circles() -> None:
    assert cycles(imports(modules())) == []


def test_cycles_finds_a_circle() -> None:
    """The check itself can fail."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_runs_back_up_and_nothing_imports_tests() -> None:
    upward = []
    for module, targets in imports(modules()).items():
        for target in targets:
            if target == "tests" or layer_of(target) > layer_of(module):
                upward.append(f"{module} -> {target}")
    assert upward == []


def test_a_family_folder_imports_no_other_family() -> None:
    """A family is a room: it may use trainer.common and the family interface, not another family."""
    crossing = []
    for module, targets in imports(modules()).items():
        parts = module.split(".")
        if parts[:2] != ["trainer", "families"] or len(parts) < 4:
            continue
        for target in targets:
            t = target.split(".")
            if t[:2] == ["trainer", "families"] and target not in FAMILY_ROOTS and t[2] != parts[2]:
                crossing.append(f"{module} -> {target}")
    assert crossing == []


def test_every_package_is_declared_for_the_wheel() -> None:
    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {
        ".".join(d.relative_to(ROOT).parts)
        for package in ("streamer", "trainer")
        for d in [ROOT / package, *(ROOT / package).rglob("*")]
        if d.is_dir() and any(f.suffix in (".py", ".html", ".json") for f in d.iterdir())
    }
    assert declared - {"moodstream_models"} == folders


def layout_table() -> str:
    """The README's layout table: one row per package folder, its modules, its docstring's first line."""
    rows = ["| folder | modules | what |", "|---|---|---|"]
    for package in ("streamer", "trainer"):
        for folder in sorted(d for d in [ROOT / package, *(ROOT / package).rglob("*")] if (d / "__init__.py").exists()):
            doc = ast.get_docstring(ast.parse((folder / "__init__.py").read_text())) or ""
            files = sorted(f.name for f in folder.glob("*.py") if f.name != "__init__.py")
            names = ", ".join(f"`{name}`" for name in files)
            rows.append(f"| `{folder.relative_to(ROOT)}/` | {names} | {doc.splitlines()[0]} |")
    return "\n".join(rows)


def test_the_readme_layout_is_the_packages_own() -> None:
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    expected = layout_table()
    assert expected in table, "the README's layout table is out of date; it should read:\n" + expected


def test_the_readme_names_every_trainer_tool() -> None:
    from trainer.__main__ import TOOLS

    readme = " ".join((ROOT / "README.md").read_text().split())
    sentence = readme.split("The trainer's other tools run as `python -m trainer TOOL`", 1)[1].split(". ", 1)[0]
    assert {name for name in TOOLS if name != "train"} == set(re.findall(r"`([a-z0-9-]+)`", sentence)), sentence
