"""Class labels of a folder of images, for class-conditional training.

Two ways to say which class an image is:

- the folder layout of ImageNet's train folder and torchvision's ``ImageFolder``: one
  subfolder per class under the root (``root/cat/001.jpg``, ``root/dog/x/002.png``),
  the class being the subfolder's name; classes are numbered in sorted order of name,
  as ``ImageFolder`` numbers them;
- a labels file beside any layout: CSV rows ``file,class`` (a header row is allowed) or
  a JSON object ``{"file": class}``, files relative to the root (or absolute). Classes
  that are all whole numbers keep their numbers (``3`` is class 3); names are numbered
  in sorted order.

:func:`labelled_images` returns the files, each one's class index and the class names,
and what it left out: images the labels file does not name, and files it names that
are not there.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from .folders import find_images, image_root

__all__ = ["LabelledImages", "labelled_images", "class_subfolders", "read_labels_file", "class_index"]


@dataclass
class LabelledImages:
    """Image files with their class indices and the class names (index -> name)."""

    files: List[Path]
    labels: List[int]
    classes: List[str]
    #: Images under the root that the labels file does not name (left out).
    unlabelled: List[Path] = field(default_factory=list)
    #: Files the labels file names that are not among the root's images.
    missing: List[str] = field(default_factory=list)


def class_subfolders(root: str | os.PathLike, files: Optional[Sequence[Path]] = None) -> Optional[List[str]]:
    """The class names of an ``ImageFolder`` layout (the root's subfolders that hold
    images, sorted), or ``None`` when images lie directly in the root (a flat folder)."""
    base = image_root(root)
    files = find_images(root) if files is None else files
    names = set()
    for path in files:
        parts = Path(path).relative_to(base).parts
        if len(parts) < 2:
            return None
        names.add(parts[0])
    return sorted(names)


def read_labels_file(path: str | os.PathLike) -> Dict[str, str]:
    """``{file: class}`` from a CSV (``file,class`` rows, a header allowed) or JSON file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"labels file {str(path)!r} does not exist")
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"labels file {str(path)!r} is not valid JSON ({err})") from None
        if not isinstance(data, dict):
            raise ValueError(f"labels file {str(path)!r} must hold a JSON object {{\"file\": class, ...}}")
        return {str(k): str(v) for k, v in data.items()}
    labels = {}
    for number, row in enumerate(csv.reader(text.splitlines()), 1):
        if not row or not "".join(row).strip():
            continue
        if len(row) < 2:
            raise ValueError(f"labels file {str(path)!r}, line {number}: expected 'file,class', got {row!r}")
        if number == 1 and row[0].strip().lower() in ("file", "filename", "path", "image"):
            continue  # a header
        labels[row[0].strip()] = row[1].strip()
    if not labels:
        raise ValueError(f"labels file {str(path)!r} names no file")
    return labels


def class_index(names: Sequence[str]) -> Dict[str, int]:
    """Each class name's index: whole numbers keep theirs, names count in sorted order."""
    distinct = sorted(set(names))
    if all(n.lstrip("-").isdigit() for n in distinct):
        numbers = {n: int(n) for n in distinct}
        bad = [n for n, v in numbers.items() if v < 0]
        if bad:
            raise ValueError(f"class numbers must be 0 or more, got {bad[0]}")
        return numbers
    return {n: i for i, n in enumerate(distinct)}


def labelled_images(root: str | os.PathLike, labels_file: Optional[str | os.PathLike] = None,
                    files: Optional[Sequence[Path]] = None) -> LabelledImages:
    """The images of ``root`` (``files``, when already listed by :func:`find_images`) with
    their classes: from ``labels_file`` if given, else from the root's class subfolders.
    A flat folder without a labels file is a ``ValueError`` that says how to label it."""
    files = find_images(root) if files is None else files
    base = image_root(root)
    if labels_file is None:
        names = class_subfolders(root, files)
        if names is None:
            raise ValueError(f"{str(root)!r} has images outside class subfolders: a class-conditional config needs "
                             f"one subfolder per class (root/CLASS/image.jpg), or --labels FILE (CSV rows "
                             f"file,class or a JSON object)")
        index = {n: i for i, n in enumerate(names)}
        labels = [index[Path(p).relative_to(base).parts[0]] for p in files]
        return LabelledImages(list(files), labels, names)
    given = read_labels_file(labels_file)
    by_name = {}
    for name, cls in given.items():
        p = Path(name).expanduser()
        by_name[os.path.normpath(str(p if p.is_absolute() else base / p))] = cls
    kept, classes, unlabelled = [], [], []
    for path in files:
        cls = by_name.pop(os.path.normpath(str(path)), None)
        if cls is None:
            unlabelled.append(path)
        else:
            kept.append(path)
            classes.append(cls)
    if not kept:
        first = next(iter(given))
        raise ValueError(f"labels file {str(labels_file)!r} names none of the images in {str(base)!r} "
                         f"(its first entry: {first!r}); name them relative to that folder")
    index = class_index(classes)
    names = [""] * (max(index.values()) + 1)
    for name, i in index.items():
        names[i] = name
    names = [n or str(i) for i, n in enumerate(names)]
    return LabelledImages(kept, [index[c] for c in classes], names, unlabelled, sorted(by_name))
