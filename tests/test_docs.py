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


#: Folders of this repository that docs name files in.
_REPO_FOLDERS = ("docs/", "tests/", "examples/", "benchmarks/", "torchgan_sagan/", ".ci/")


def _named_paths(text: str):
    """Paths of the repository named in backticks: `tests/test_docs.py`,
    `examples/celeba.py --epochs 5` (the first word), `tests/x.py::test_y` (the file)."""
    for span in re.findall(r"`([^`\n]+)`", text):
        word = span.split()[0] if span.split() else ""
        word = word.split("::")[0].rstrip(".,:;)")
        if word.startswith(_REPO_FOLDERS) and not any(c in word for c in "*<>{}$~"):
            yield word


def test_every_path_named_in_backticks_exists():
    """A file or folder the docs name in backticks (a test, a script, a picture) is
    there: moved tests and renamed scripts leave no stale names behind."""
    missing = []
    pages = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), ROOT / "benchmarks" / "RESULTS.md"]
    for page in pages:
        for path in _named_paths(page.read_text()):
            if not ((ROOT / path).exists() or (page.parent / path).exists()):
                missing.append(f"{page.relative_to(ROOT)}: {path}")
    assert not missing, missing


def test_the_path_check_sees_what_it_should():
    text = "run `tests/test_docs.py::test_x`, `examples/celeba.py --epochs 2`, `docs/nowhere.md`, `RUN/x.png`"
    assert list(_named_paths(text)) == ["tests/test_docs.py", "examples/celeba.py", "docs/nowhere.md"]


def test_the_package_has_its_license():
    text = (ROOT / "LICENSE").read_text()
    setup = (ROOT / "setup.cfg").read_text()
    assert text.startswith("MIT License") and "license = MIT" in setup and "license_files = LICENSE" in setup


def _pages():
    """The pages people read (docs/api.md is generated from the code's docstrings)."""
    return [ROOT / "README.md", ROOT / "benchmarks" / "RESULTS.md",
            *sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "api.md")]


def _anchor(heading: str) -> str:
    """The anchor a Markdown renderer gives a heading (GitHub's rule: lower case, spaces to
    hyphens, punctuation dropped)."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_link_to_a_section_finds_its_heading():
    for page in _pages():
        for target, anchor in re.findall(r"\]\(([^)#\s]*)#([^)\s]+)\)", page.read_text()):
            linked = (page.parent / target) if target else page
            if target.startswith("http") or linked.suffix != ".md":
                continue
            headings = re.findall(r"^#+ (.+)$", linked.read_text(), flags=re.M)
            assert anchor in {_anchor(h) for h in headings}, f"{page.name} links to {target}#{anchor}: no such heading"


#: Measured figures: a mean and its spread over seeds, a ratio, a percentage with decimals.
FIGURE = re.compile(r"\b\d+\.\d+ ± \d+\.\d+|\b\d+\.\d\dx\b|\b\d+\.\d+%")


def _figures(text: str):
    return set(FIGURE.findall(text))


def test_each_measured_figure_is_said_on_one_page():
    """A figure lives on one page, beside its date, torch version, threads and command;
    the others link to it (a copy goes stale when the measurement is rerun)."""
    seen = {}
    for page in _pages():
        for figure in _figures(page.read_text()):
            assert figure not in seen, f"{figure} is on {seen[figure]} and {page.relative_to(ROOT)}: link instead"
            seen[figure] = page.relative_to(ROOT)


def test_the_figure_check_sees_figures():
    assert _figures("FID 1.98 ± 0.11, 2.63x as fast, 7.7% fewer; not 2x, 3 seeds, 0.999") == \
        {"1.98 ± 0.11", "2.63x", "7.7%"}
    assert _anchor("Does attention help? Not measurably, and it costs time") == \
        "does-attention-help-not-measurably-and-it-costs-time"
    assert _anchor("The tutorial migration: torchgan's network against `sagan_tutorial_64`") == \
        "the-tutorial-migration-torchgans-network-against-sagan_tutorial_64"
