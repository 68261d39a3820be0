"""Export a trained generator for plain PyTorch: ``python -m torchgan_sagan.export RUN``.

    python -m torchgan_sagan.export runs/sagan_faces_32                 # RUN/generator.pt2
    python -m torchgan_sagan.export runs/digits --out digits_G.pt2

The generator (in eval mode: its moving average when it has one, spectral norm
folded into the weights) is traced with ``torch.export`` and saved with
``torch.export.save``. Loading it needs torch alone, neither this package nor
torchgan::

    import torch
    G = torch.export.load("generator.pt2").module()
    images = G(torch.randn(16, 128))              # conditional: G(z, labels)

``torch.export`` is chosen over ONNX because it needs no extra package and keeps
every op (the fused attention included) as PyTorch runs it; the batch size stays
free. After writing, the file is loaded back and checked against the generator on
the same noise.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import List, Optional

import torch
import torch.nn as nn
from torch.nn.utils import parametrize

from .recipe.cli import CommandError, command_parser, parse_device, run_command
from .trainer.run_folder import load_generator

__all__ = ["export_generator", "fold_spectral_norm", "build_parser", "main"]


class _Frozen(nn.Module):
    """The generator as it runs in eval mode, with an explicit signature for export."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator.eval()

    def forward(self, z: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        return self.generator(z) if labels is None else self.generator(z, labels)


def fold_spectral_norm(net: nn.Module) -> nn.Module:
    """A copy of ``net`` in eval mode whose parametrized weights (spectral norm) are plain
    weights holding what the parametrizations compute in eval mode: the same outputs,
    without the normalization recomputed at every call. ``net`` is left as it was."""
    folded = copy.deepcopy(net).eval()
    modules = [m for m in folded.modules() if parametrize.is_parametrized(m)]
    with torch.no_grad():
        values = [{name: getattr(m, name).detach().clone() for name in m.parametrizations} for m in modules]
    for module, weights in zip(modules, values):
        # Not parametrize.remove_parametrizations: a copy shares its parametrized class
        # (and the class's weight property) with the original, which would lose it too.
        module.__class__ = type(module).__bases__[0]
        del module._modules["parametrizations"]
        for name, value in weights.items():
            module.register_parameter(name, nn.Parameter(value, requires_grad=False))
    return folded


def _example_inputs(generator: nn.Module, batch: int, device) -> tuple:
    z = torch.randn(batch, generator.encoding_dims, device=device)
    if generator.num_classes:
        return z, torch.arange(batch, device=device) % generator.num_classes
    return (z,)


def export_generator(generator: nn.Module, path: Path, *, check: bool = True) -> float:
    """Write ``generator`` (eval mode) to ``path`` with ``torch.export``; the batch size
    is dynamic. With ``check``, load the file back and return the largest absolute
    difference from the generator's images on the same noise (else ``nan``)."""
    device = next(generator.parameters()).device
    frozen = _Frozen(fold_spectral_norm(generator))
    example = _example_inputs(generator, 4, device)
    batch = torch.export.Dim("batch", min=1, max=4096)
    shapes = ({0: batch},) if len(example) == 1 else ({0: batch}, {0: batch})
    with torch.no_grad():
        program = torch.export.export(frozen, example, dynamic_shapes=shapes, strict=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(program, str(path))
    if not check:
        return float("nan")
    inputs = _example_inputs(generator, 7, device)
    with torch.no_grad():
        expected = _Frozen(generator)(*inputs)
        got = torch.export.load(str(path)).module()(*inputs)
    return float((expected - got).abs().max())


def build_parser() -> argparse.ArgumentParser:
    return command_parser("export", "Export a trained generator for plain PyTorch (torch.export).",
                          "output file (default: RUN/generator.pt2)")


def run(args: argparse.Namespace) -> None:
    device = parse_device(args.device)
    generator = load_generator(args.run, device=device, trust_checkpoint=args.trust_checkpoint)
    out = args.out or (args.run if args.run.is_dir() else args.run.parent) / "generator.pt2"
    if out.suffix != ".pt2":
        raise CommandError(f"--out {out}: torch.export files end in .pt2")
    difference = export_generator(generator, out)
    inputs = "z, labels" if generator.num_classes else "z"
    print(f"Wrote {out}: torch.export.load({str(out)!r}).module()({inputs}) with z of shape "
          f"(B, {generator.encoding_dims}) gives images of shape (B, {generator.out_channels}, "
          f"{generator.out_size}, {generator.out_size}); largest difference from the generator on a "
          f"check batch: {difference:.2e}")


def main(argv: Optional[List[str]] = None) -> int:
    return run_command("export", build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())
