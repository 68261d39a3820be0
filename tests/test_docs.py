"""The docs stay true to the code: the API reference is generated from it, and every
page the README links exists."""

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _make_api():
    spec = importlib.util.spec_from_file_location("make_api", ROOT / "docs" / "make_api.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_api_reference_matches_the_code():
    """docs/api.md holds every public signature as the code has it (regenerate it with
    python docs/make_api.py)."""
    assert (ROOT / "docs" / "api.md").read_text() == _make_api().render()


def test_api_reference_covers_every_module():
    package = ROOT / "torchgan_sagan"
    modules = {".".join(p.relative_to(ROOT).with_suffix("").parts) for p in package.rglob("*.py")
               if not p.name.startswith("_")}
    assert modules == set(_make_api().MODULES)


def test_every_linked_file_exists():
    for page in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for target in re.findall(r"\]\(([^)#]+)[^)]*\)", page.read_text()):
            if not target.startswith("http"):
                assert (page.parent / target).exists(), f"{page.name} links to a missing {target}"


def test_readme_is_short():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 180
