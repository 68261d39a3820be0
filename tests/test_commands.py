"""Every command that the README and the docs tell people to type parses: each script's
or module's own argument parser accepts its flags (nothing runs past the parsing)."""

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "benchmarks").glob("*.md"))]
#: Commands about the environment rather than this project's scripts.
NOT_OURS = ("python -m pip", "python -m pytest", "python -c")

#: Runs each command up to its parser: parse_args parses, reports, and stops the script.
_PARSE_ONLY = r"""
import argparse, json, runpy, sys

class Parsed(BaseException):
    pass

def parse_args(self, args=None, namespace=None):
    namespace, unknown = self.parse_known_args(args, namespace)
    if unknown:
        self.error("unrecognized arguments: " + " ".join(unknown))
    raise Parsed

argparse.ArgumentParser.parse_args = parse_args
results = []
for target, args in json.loads(sys.argv[1]):
    sys.argv = [target, *args]
    try:
        if target.endswith(".py"):
            runpy.run_path(target, run_name="__main__")
        else:
            runpy.run_module(target, run_name="__main__", alter_sys=True)
        results.append("ran to the end without parsing its arguments")
    except Parsed:
        results.append("ok")
    except SystemExit as exit:
        results.append(f"exit {exit.code}")
print(json.dumps(results))
"""


def _command_lines(text: str):
    """Lines of code blocks (fenced or indented) that start a python or torchrun
    command, with their continuation lines joined."""
    lines, in_fence = [], False
    for line in text.splitlines():
        if line.strip().startswith("```"):
            in_fence = not in_fence
            continue
        if in_fence or line.startswith("    "):
            lines.append(line.strip())
        else:
            lines.append("")
    joined, current = [], ""
    for line in lines:
        if current:
            current += " " + line
        elif re.match(r"^(\w+=\S+ )*(python|torchrun) ", line):
            current = line
        if current and not current.endswith("\\"):
            joined.append(current)
            current = ""
        elif current:
            current = current[:-1].rstrip()
    return joined


def documented_commands():
    commands = []
    for page in PAGES:
        for line in _command_lines(page.read_text()):
            words = shlex.split(line, comments=True)
            ends = [i for i, w in enumerate(words) if w in ("&", "&&", "|", "||", ";") or re.match(r"^\d?>", w)]
            words = words[: ends[0]] if ends else words  # the shell's, not the command's: `... &`, `| tee`
            while words and re.match(r"^\w+=", words[0]):
                words.pop(0)  # environment variables
            if not words or " ".join(words).startswith(NOT_OURS):
                continue
            if words[0] == "torchrun":
                script = next(i for i, w in enumerate(words) if w.endswith(".py"))
                target, args = words[script], words[script + 1:]
            elif words[1] == "-m":
                target, args = words[2], words[3:]
            else:
                target, args = words[1], words[2:]
            commands.append((page.name, line, target, args))
    return commands


def test_the_docs_hold_commands_of_every_kind():
    targets = {target for _, _, target, _ in documented_commands()}
    assert {"examples/celeba.py", "examples/compare_losses.py", "torchgan_sagan.generate",
            "torchgan_sagan.evaluate", "torchgan_sagan.export"} <= targets


@pytest.mark.slow
def test_a_wrong_flag_is_caught(tmp_path):
    results = _parse([("examples/celeba.py", ["--epochs", "2"]), ("examples/celeba.py", ["--epoch-count", "2"]),
                      ("torchgan_sagan.export", ["runs/x", "--format", "nonsense"])])
    assert results == ["ok", "exit 2", "exit 2"]


def _parse(commands):
    result = subprocess.run([sys.executable, "-c", _PARSE_ONLY, json.dumps(commands)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_every_documented_command_parses():
    commands = documented_commands()
    results = _parse([(target, args) for _, _, target, args in commands])
    failed = [f"{page}: {line}  ->  {outcome}" for (page, line, _, _), outcome in zip(commands, results)
              if outcome != "ok"]
    assert not failed, "\n".join(failed)
