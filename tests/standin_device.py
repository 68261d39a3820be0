"""A device that is not the CPU, for running whole programs on a machine without a GPU.

``install()`` registers ``standin``, a PyTorch backend written in Python (on the
``PrivateUse1`` dispatch key, through ``torch.utils.backend_registration``): a tensor
on ``standin:0`` keeps its numbers in a CPU tensor, and every operation on it runs on
the CPU, but the tensor reports ``standin:0`` as its device and the backend enforces
the rules CUDA enforces between devices:

- an operation whose tensors are on both devices raises ``RuntimeError: Expected all
  tensors to be on the same device`` (as CUDA does), except for what CUDA accepts too:
  0-dim CPU tensors (scalars), CPU index tensors of indexing operations, and copies
  between devices (``.to``, ``.cpu()``, ``copy_``);
- ``.numpy()`` of a device tensor raises, as for CUDA;
- every read of a device value back to the host (``.item()``, ``.tolist()``, ``bool(t)``)
  is counted (``host_reads``), and every operation run on the device too
  (``operations``).

So a program run with ``--device standin`` fails on this CPU wherever it would mix
devices on a GPU: batches on the device handed to a function with CPU samples, noise
made on the CPU and fed to a net on the device, a checkpoint's tensors restored to
the wrong place.

What it cannot see: whatever the code does only when ``device.type == "cuda"`` (fused
Adam, the pinned-host copies of ``DeviceBatches``, CUDA graphs, streams and events,
cuDNN and TF32 settings): those branches are not taken here, and their tests use
stand-ins for ``torch.cuda`` instead. Nothing runs asynchronously, so a missing
synchronization cannot show; kernels, precision, speed and memory are the CPU's.

    python tests/standin_device.py examples/celeba.py --device standin --epochs 1

runs a script's ``main()`` with the device installed, then prints one line of counts
(``standin: N operations on the device, M host reads``) to stderr.
"""

from __future__ import annotations

import runpy
import sys
from typing import Any, Dict

import torch
from torch.utils._pytree import tree_map

__all__ = ["NAME", "install", "DeviceTensor", "counts"]

NAME = "standin"

aten = torch.ops.aten

#: Copies between devices: mixing is their purpose.
_TRANSFERS = {aten._to_copy.default, aten.copy_.default, aten._copy_from.default,
              aten._copy_from_and_resize.default}
#: Indexing: CUDA takes CPU index tensors (the tensors after the first argument).
_INDEXING = {aten.index.Tensor, aten.index_put_.default, aten.index_put.default,
             aten._index_put_impl_.default}
#: Operations that read a device value back to the host.
_HOST_READS = {aten._local_scalar_dense.default, aten.is_nonzero.default}

_counts = {"operations": 0, "host_reads": 0}


def counts() -> Dict[str, int]:
    """Operations run on the device and reads back to the host so far."""
    return dict(_counts)


def _on_standin(device: Any) -> bool:
    return device is not None and torch.device(device).type == NAME


class DeviceTensor(torch.Tensor):
    """A tensor on ``standin:0``: a wrapper around the CPU tensor that holds its numbers."""

    @staticmethod
    def __new__(cls, data: torch.Tensor):
        return torch.Tensor._make_wrapper_subclass(
            cls, data.size(), strides=data.stride(), storage_offset=data.storage_offset(), dtype=data.dtype,
            layout=data.layout, device=torch.device(NAME, 0), requires_grad=data.requires_grad)

    def __init__(self, data: torch.Tensor) -> None:
        self.held = data

    def __repr__(self) -> str:
        return f"DeviceTensor({self.held!r}, device='{NAME}:0')"

    def __reduce_ex__(self, protocol):
        # Saved as the CPU tensor it holds, as torch.save does with CUDA tensors when
        # loaded with map_location="cpu".
        return self.held.__reduce_ex__(protocol)

    # tensorboardX recognizes torch tensors by "torch" in the name of their type.
    __module__ = "torch_standin"

    def tolist(self):
        _counts["host_reads"] += 1
        return self.held.tolist()

    def numpy(self, *, force: bool = False):
        raise TypeError(f"can't convert {NAME}:0 device type tensor to numpy. Use Tensor.cpu() to copy the "
                        f"tensor to host memory first.")

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        return _run(func, args, kwargs or {})


def _run(func, args, kwargs):
    """``func`` on the CPU tensors that device tensors hold; results that belong on the
    device are wrapped again. Mixed devices raise as CUDA's would."""
    on_device, on_cpu = [], []

    def unwrap(x):
        if isinstance(x, DeviceTensor):
            on_device.append(x)
            return x.held
        if isinstance(x, torch.Tensor) and x.dim() > 0:
            on_cpu.append(x)
        if isinstance(x, torch.device) and x.type == NAME:
            return torch.device("cpu")
        return x

    if func in _INDEXING:  # only the indexed tensor (and the values put) must be on the device
        first = unwrap(args[0])
        others = tree_map(lambda x: x.held if isinstance(x, DeviceTensor) else x, args[1:])
        cpu_args = (first, *others)
        on_cpu.clear()
    else:
        cpu_args = tree_map(unwrap, args)
    cpu_kwargs = {key: (torch.device("cpu") if key == "device" and _on_standin(value) else tree_map(unwrap, value))
                  for key, value in kwargs.items()}
    if on_device and on_cpu and func not in _TRANSFERS:
        shapes = ", ".join(str(tuple(t.shape)) for t in on_cpu[:3])
        raise RuntimeError(f"Expected all tensors to be on the same device, but found at least two devices, "
                           f"{NAME}:0 and cpu! ({func}: CPU tensors of shape {shapes})")
    _counts["operations"] += 1
    if func in _HOST_READS and on_device:
        _counts["host_reads"] += 1
    out = func(*cpu_args, **cpu_kwargs)
    if func is aten.copy_.default:  # into args[0], wherever it lives
        return args[0]
    if func is aten._to_copy.default:
        to_device = _on_standin(kwargs["device"]) if "device" in kwargs else bool(on_device)
    else:
        to_device = bool(on_device) or _on_standin(kwargs.get("device"))
    if not to_device:
        return out
    return tree_map(lambda x: DeviceTensor(x) if type(x) is torch.Tensor else x, out)


class _BackendModule:
    """``torch.standin``: what PyTorch and the package ask of a device's module."""

    def is_initialized(self) -> bool:
        return True

    def is_available(self) -> bool:
        return True

    def device_count(self) -> int:
        return 1

    def current_device(self) -> int:
        return 0

    def _is_in_bad_fork(self) -> bool:
        return False

    def manual_seed_all(self, seed: int) -> None:
        pass


_installed = False


def install() -> None:
    """Register the ``standin`` device in this process (once; it cannot be undone, so
    run it in a process of its own)."""
    global _installed
    if _installed:
        return
    from torch.utils.backend_registration import _setup_privateuseone_for_python_backend

    _setup_privateuseone_for_python_backend(NAME, backend_module=_BackendModule())
    fallback = torch.library.Library("_", "IMPL")  # kept: a registration lives as long as its library
    fallback.fallback(lambda op, *args, **kwargs: _run(op, args, kwargs), dispatch_key="PrivateUse1")
    # Copies made while Python's dispatch key is excluded (torch.tensor(..., device=...))
    # reach no Python fallback: they get kernels of their own.
    kernels = torch.library.Library("aten", "IMPL")
    for op in (aten.copy_.default, aten._copy_from.default, aten._to_copy.default, aten.empty_strided.default,
               aten.empty.memory_format):
        name = op._schema.name.split("::")[1] + (f".{op._overloadname}" if op._overloadname != "default" else "")
        kernels.impl(name, lambda *args, _op=op, **kwargs: _run(_op, args, kwargs), "PrivateUse1")
    install.libraries = (fallback, kernels)
    _installed = True


def main(argv) -> int:
    if not argv:
        print("usage: python tests/standin_device.py SCRIPT [ARGS...]", file=sys.stderr)
        return 2
    install()
    script, *args = argv
    module = runpy.run_path(script, run_name="standin_script")
    status = module["main"](args)
    print(f"standin: {_counts['operations']} operations on the device, {_counts['host_reads']} host reads",
          file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
