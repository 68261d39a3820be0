"""Files that an interruption cannot damage, and the classes a checkpoint may hold.

:func:`atomic_write` and :func:`atomic_save` replace a file in one step, so that a
killed process or a full disk leaves the previous file and never a truncated one.

A torchgan checkpoint is a pickle that holds, besides tensors, the run's loss and metric
objects. Every module that defines a class whose objects may sit in a checkpoint
registers it here (:func:`register_checkpoint_class`), with the module paths under
which older versions pickled it; the checkpoint reader
(:mod:`torchgan_sagan.trainer.checkpoints`) imports those modules, so every class is
registered before a file is read. This module imports nothing from the package.
"""

from __future__ import annotations

import os
import pickle
import shutil
import tempfile
import types
from pathlib import Path
from typing import Any, BinaryIO, Callable, Dict, List, Tuple, Union

import torch

__all__ = [
    "atomic_write",
    "atomic_save",
    "keep_copy",
    "default_cache_dir",
    "remove_partial_files",
    "replace_durably",
    "register_checkpoint_class",
    "checkpoint_classes",
    "renaming_pickle_module",
]

PathLike = Union[str, os.PathLike]
#: The name of a file that :func:`atomic_write` has not finished: ``.tmp-XXXX.part``.
PARTIAL_PREFIX, PARTIAL_SUFFIX = ".tmp-", ".part"

_CLASSES: List[type] = []
#: "old.module.Name" -> the class it now names.
_MOVED: Dict[str, type] = {}


def atomic_write(path: PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` with ``write(file)`` through a temporary file in the same folder.

    The file is written and synced under a temporary name, then renamed over
    ``path`` in one step, and the folder is synced, so an interrupted write (a kill, a
    full disk, a power cut) leaves the previous file intact and never a truncated one.
    It gets the mode any new file gets (``0o666`` less the umask: 0644 under 022), so
    that a teammate can read a run's checkpoints.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=PARTIAL_PREFIX, suffix=PARTIAL_SUFFIX, dir=folder)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would hide the file from the team
        with os.fdopen(fd, "wb") as f:
            write(f)
        replace_durably(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _umask() -> int:
    """The process's umask (read by setting it, then putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def replace_durably(complete: PathLike, path: PathLike) -> None:
    """Put the finished file ``complete`` in ``path``'s place in one step: sync its
    contents, rename it over ``path``, then sync the folder, so that the rename too
    survives a power cut. (:func:`atomic_write` ends with this; a file written some
    other way, such as a memory-mapped array, can end with it too.)"""
    with open(complete, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(complete, path)
    _sync_folder(os.path.dirname(os.path.abspath(path)))


def _sync_folder(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # a platform that cannot open folders (Windows)
        return
    try:
        os.fsync(fd)
    except OSError:  # a file system that cannot sync folders
        pass
    finally:
        os.close(fd)


def remove_partial_files(folder: PathLike) -> List[str]:
    """Delete the temporary files that writes killed mid-way left in ``folder`` (a
    process that died inside :func:`atomic_write` cannot clean up); returns their
    names. Call it before writing there, not while another process writes."""
    if not os.path.isdir(folder):
        return []
    names = [n for n in os.listdir(folder) if n.startswith(PARTIAL_PREFIX) and n.endswith(PARTIAL_SUFFIX)]
    for name in names:
        os.remove(os.path.join(folder, name))
    return names


def keep_copy(source: PathLike, target: PathLike) -> None:
    """``target`` becomes a lasting copy of the finished file ``source``: a hard link
    where the file system allows (no space used until ``source`` is replaced, which an
    atomic write does by renaming, leaving the link's contents alone), else a copy,
    written atomically. Its folder is made as needed."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except FileExistsError:
        return
    except OSError:  # no hard links here (another file system, some network ones)
        with open(source, "rb") as f:
            atomic_write(target, lambda out: shutil.copyfileobj(f, out))


def atomic_save(obj: Any, path: PathLike) -> None:
    """``torch.save(obj, path)``, atomically (see :func:`atomic_write`)."""
    atomic_write(path, lambda f: torch.save(obj, f))


def default_cache_dir() -> Path:
    """Where the package caches what it builds once (the digit classifier, decoded
    images): ``$TORCHGAN_SAGAN_CACHE``, else ``$XDG_CACHE_HOME/torchgan_sagan``, else
    ``~/.cache/torchgan_sagan``."""
    root = os.environ.get("TORCHGAN_SAGAN_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torchgan_sagan")
    return Path(root)


def register_checkpoint_class(cls: type, *old_paths: str) -> type:
    """Allow objects of ``cls`` in checkpoints read without trust; ``old_paths``
    ("module.Name") are where earlier versions defined it. Returns ``cls``, so that it
    also serves as a class decorator."""
    if cls not in _CLASSES:
        _CLASSES.append(cls)
    for path in old_paths:
        _MOVED[path] = cls
    return cls


def checkpoint_classes() -> List[Union[type, Tuple[type, str]]]:
    """The registered classes, for ``torch.serialization.safe_globals``: each class,
    and a ``(class, "old.module.Name")`` pair for each of its old paths."""
    return [*_CLASSES, *((cls, path) for path, cls in _MOVED.items())]


class _RenamingUnpickler(pickle.Unpickler):
    """Finds a registered class under the path an earlier version pickled it at."""

    def find_class(self, module: str, name: str) -> Any:
        moved = _MOVED.get(f"{module}.{name}")
        return moved if moved is not None else super().find_class(module, name)


def renaming_pickle_module() -> types.ModuleType:
    """A ``pickle_module`` for ``torch.load(..., weights_only=False)`` that resolves the
    old paths of registered classes."""
    module = types.ModuleType("torchgan_sagan_pickle")
    module.Unpickler = _RenamingUnpickler
    module.load = lambda file, **kwargs: _RenamingUnpickler(file, **kwargs).load()
    module.__dict__.update({k: getattr(pickle, k) for k in ("UnpicklingError", "HIGHEST_PROTOCOL")})
    return module
