"""Write docs/api.md from the code: every public name's signature and docstring.

    python docs/make_api.py            # rewrite docs/api.md
    python docs/make_api.py --check    # exit 1 if docs/api.md is out of date

The test suite runs the check, so the reference cannot drift from the code.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import inspect
import sys
from pathlib import Path

API = Path(__file__).resolve().parent / "api.md"

#: Modules in reading order; each one's ``__all__`` is documented.
MODULES = [
    # the floors of the package, from the bottom up (see torchgan_sagan/__init__.py)
    "torchgan_sagan.checks",
    "torchgan_sagan.files",
    "torchgan_sagan.locks",
    "torchgan_sagan.layers.attention",
    "torchgan_sagan.layers.spectral_norm",
    "torchgan_sagan.layers.conditional",
    "torchgan_sagan.losses",
    "torchgan_sagan.augment",
    "torchgan_sagan.models.generator",
    "torchgan_sagan.models.discriminator",
    "torchgan_sagan.models.resnet",
    "torchgan_sagan.models.common",
    "torchgan_sagan.models.options",
    "torchgan_sagan.models.ema",
    "torchgan_sagan.models.torchgan_tutorial",
    "torchgan_sagan.data.folders",
    "torchgan_sagan.data.labels",
    "torchgan_sagan.data.embedded",
    "torchgan_sagan.data.decoding",
    "torchgan_sagan.data.image_cache",
    "torchgan_sagan.data.device_batches",
    "torchgan_sagan.metrics.sampling",
    "torchgan_sagan.metrics.classifier",
    "torchgan_sagan.metrics.scores",
    "torchgan_sagan.metrics.inception",
    "torchgan_sagan.metrics.standard",
    "torchgan_sagan.metrics.coverage",
    "torchgan_sagan.metrics.memorization",
    "torchgan_sagan.visualize",
    "torchgan_sagan.recipe.configs",
    "torchgan_sagan.recipe.registry",
    "torchgan_sagan.recipe.presets",
    "torchgan_sagan.recipe.cli",
    "torchgan_sagan.trainer.trainer",
    "torchgan_sagan.trainer.run_folder",
    "torchgan_sagan.trainer.run_lock",
    "torchgan_sagan.trainer.resumable",
    "torchgan_sagan.trainer.rollback",
    "torchgan_sagan.trainer.preemption",
    "torchgan_sagan.trainer.divergence",
    "torchgan_sagan.trainer.run_state",
    "torchgan_sagan.trainer.checkpoints",
    "torchgan_sagan.trainer.monitoring",
    "torchgan_sagan.trainer.deferred_logging",
    "torchgan_sagan.trainer.cuda_graphs",
    "torchgan_sagan.trainer.adam_state",
    "torchgan_sagan.trainer.distributed",
    "torchgan_sagan.trainer.sharding",
    "torchgan_sagan.trainer.torchgan_fixes",
    "torchgan_sagan.generate",
    "torchgan_sagan.evaluate",
    "torchgan_sagan.export",
]


def _first_paragraph(doc: str) -> str:
    return inspect.cleandoc(doc or "").split("\n\n")[0].replace("\n", " ")


def _signature(name: str, obj) -> str:
    try:
        return f"{name}{inspect.signature(obj)}"
    except (TypeError, ValueError):
        return name


def _default(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return f"`{f.default!r}`"
    if f.default_factory is not dataclasses.MISSING:
        return f"`{f.default_factory()!r}`"
    return "required"


def _entry(module_name: str, name: str, obj) -> list:
    lines = [f"### `{module_name}.{name}`", ""]
    if inspect.isclass(obj) or inspect.isfunction(obj):
        kind = "class " if inspect.isclass(obj) else ""
        lines += ["```python", kind + _signature(name, obj), "```", ""]
        doc = inspect.getdoc(obj) if inspect.isfunction(obj) or obj.__doc__ else None
        if doc:
            lines += [doc, ""]
        if dataclasses.is_dataclass(obj):
            lines += ["| field | default | meaning |", "|---|---|---|"]
            lines += [f"| `{f.name}` | {_default(f)} | {f.metadata.get('help', '')} |"
                      for f in dataclasses.fields(obj)]
            lines.append("")
    else:
        lines += [f"A `{type(obj).__name__}`: `{sorted(obj) if isinstance(obj, (dict, frozenset, set)) else obj!r}`"
                  if not callable(obj) else "", ""]
    return lines


def render() -> str:
    out = [
        "# API reference",
        "",
        "Generated from the docstrings by `python docs/make_api.py`; the tests check that it",
        "matches the code. Names re-exported by `torchgan_sagan` are listed where they are defined.",
        "",
        "| module | what it holds |",
        "|---|---|",
    ]
    modules = [importlib.import_module(m) for m in MODULES]
    out += [f"| `{m.__name__}` | {_first_paragraph(m.__doc__)} |" for m in modules]
    out.append("")
    for module in modules:
        out += [f"## `{module.__name__}`", "", inspect.cleandoc(module.__doc__ or ""), ""]
        elsewhere = []
        for name in module.__all__:
            obj = getattr(module, name)
            home = getattr(obj, "__module__", module.__name__) if callable(obj) else module.__name__
            if home != module.__name__ and home in MODULES:
                elsewhere.append(f"`{name}` (`{home}`)")
            else:
                out += _entry(module.__name__, name, obj)
        if elsewhere:
            out += ["Also importable from here: " + ", ".join(elsewhere) + ".", ""]
    return "\n".join(out).rstrip() + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="only check that docs/api.md is up to date")
    args = p.parse_args(argv)
    text = render()
    if args.check:
        if API.read_text() != text:
            print("docs/api.md is out of date: run python docs/make_api.py", file=sys.stderr)
            return 1
        return 0
    API.write_text(text)
    print(f"wrote {API}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
