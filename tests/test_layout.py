"""The package's shape: subpackages, imports that run one way, modules of a readable
size. Read from the source with ``ast`` (imports inside functions included), so that
an import hidden in a function cannot hide a cycle."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "torchgan_sagan"
MAX_TOP_LEVEL_ENTRIES = 16
MAX_MODULE_LINES = 320


def _module_name(path: Path) -> str:
    parts = ["torchgan_sagan", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules():
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(name: str, path: Path, known) -> set:
    """The package modules that ``name`` imports. Importing ``a.b.c`` also runs the
    ``__init__`` of ``a`` and ``a.b`` (not counted when they are ``name``'s own
    packages, which run first anyway); ``from a import x``, where ``x`` is no module,
    reads ``a``'s ``__init__``, own package or not."""
    is_package = path.name == "__init__.py"
    explicit, implied = set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                explicit.add(sub if sub in known else module)
        elif isinstance(node, ast.Import):
            explicit.update(alias.name for alias in node.names)
    for target in list(explicit):
        parts = target.split(".")
        implied.update(".".join(parts[:i]) for i in range(1, len(parts)))
    own_packages = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
    return ({t for t in explicit if t in known} | {t for t in implied if t in known and t not in own_packages}) - {name}


def _graph():
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _find_cycle(graph):
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_reader_sees_imports_inside_functions_and_finds_a_planted_cycle(tmp_path):
    a = tmp_path / "a.py"
    a.write_text("def f():\n    from .b import g\n")
    graph = {"p.a": _imports("p.a", a, {"p", "p.a", "p.b"}), "p.b": {"p.a"}}
    assert graph["p.a"] == {"p.b"}
    assert _find_cycle(graph) == ["p.a", "p.b", "p.a"]


def test_the_reader_sees_a_name_read_from_the_own_package(tmp_path):
    c = tmp_path / "c.py"
    c.write_text("from . import d\nfrom .. import helper\n")
    known = {"p", "p.q", "p.q.c", "p.q.d"}
    assert _imports("p.q.c", c, known) == {"p.q.d", "p"}


def test_no_import_cycle():
    cycle = _find_cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_parts_below_import_nothing_above():
    """The floors of the package's docstring: each imports only from floors below."""
    floors = [
        {"checks", "files", "locks"},
        {"layers", "losses", "augment"},
        {"models"},
        {"data"},
        {"metrics"},
        {"visualize"},
        {"recipe"},
        {"trainer"},
        {"generate", "evaluate", "export"},
    ]
    floor_of = {part: i for i, parts in enumerate(floors) for part in parts}
    for name, targets in _graph().items():
        if name == "torchgan_sagan":
            continue
        part = name.split(".")[1]
        assert part in floor_of, f"{name} is on no floor of the layout: add it to this test and the docstring"
        for target in targets:
            if target == "torchgan_sagan":
                pytest.fail(f"{name} imports the package's __init__ (everything)")
            other = target.split(".")[1]
            assert floor_of[other] <= floor_of[part], f"{name} imports {target}, which sits above it"


def test_subpackages_and_a_short_top_level():
    entries = [p for p in PACKAGE.iterdir() if p.name != "__pycache__"]
    subpackages = [p for p in entries if (p / "__init__.py").is_file()]
    assert len(subpackages) >= 3
    assert len(entries) <= MAX_TOP_LEVEL_ENTRIES, sorted(p.name for p in entries)


def test_no_module_is_too_long_to_read():
    long = {name: n for name, path in _modules().items() if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_tests_mirror_the_package():
    tests = Path(__file__).resolve().parent
    for sub in (p for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()):
        assert (tests / sub.name).is_dir(), f"torchgan_sagan/{sub.name}/ has no tests/{sub.name}/"


@pytest.mark.slow  # a pytest subprocess
def test_the_suite_runs_without_pytests_cache(tmp_path):
    """``pytest -p no:cacheprovider`` (read-only checkouts): the session fixtures then
    make their own cache folder."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider",
                             f"{Path(__file__).resolve()}::test_no_import_cycle"], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-2000:]


def test_the_paper_nets_are_exported_where_the_readme_names_them():
    import torchgan_sagan
    from torchgan_sagan.models import SAGANResNetDiscriminator, SAGANResNetGenerator

    assert (torchgan_sagan.SAGANResNetGenerator, torchgan_sagan.SAGANResNetDiscriminator) == \
        (SAGANResNetGenerator, SAGANResNetDiscriminator)
    assert {"SAGANResNetGenerator", "SAGANResNetDiscriminator"} <= set(torchgan_sagan.__all__)
