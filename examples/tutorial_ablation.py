"""Why torchgan's tutorial network and this package's version of it train differently.

    python examples/tutorial_ablation.py                 # every step, 3 seeds: ~80 min on 2 CPU cores
    python examples/tutorial_ablation.py --variants ours ours+tgsn --seeds 0
    python examples/tutorial_ablation.py --quick         # tiny smoke run

Both nets are the tutorial's (torchgan's "Tutorial 4. Self Attention GAN"): same widths,
attention placement, BatchNorm, LeakyReLU(0.2), tanh on D's output, trained with the
tutorial's recipe (Wasserstein loss with weight clipping at 0.01, Adam 1e-4 / 4e-4,
betas (0, 0.999)) on the digits benchmark of ``examples/compare_losses.py`` (32x32,
1,200 iterations, batch 64, FID in a digit classifier's features). ``tutorial`` is
torchgan's network built from torchgan's layers (``torchgan_sagan.models.torchgan_tutorial``);
``ours`` is config ``sagan_tutorial_64`` at that size (G at 8e-4 since the recipe search;
``ours+glr4`` is the preset between the fix and that search), and ``old`` the same as it
was before this ablation fixed it (G at 1e-4, spectral norm of transposed convolutions
over their output channels). Each ``+step`` changes one thing towards torchgan's version (or,
for the last ones, to another recipe);
:data:`STEPS` says what each does, and ``ours+a+b`` combines them. ``hinge`` is the
package's default recipe (config ``sagan_32``, hinge loss, as in compare_losses), to
try a step there too (``hinge+sn_in``). Writes ``results.md`` and ``results.json`` to
``--out`` after every variant; ``--combine`` merges runs split across processes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import torch
import torch.nn as nn
from torch.nn.utils import parametrize
from torchgan.layers import SelfAttention2d as TorchganSelfAttention2d
from torchgan.layers import SpectralNorm2d
from torchgan.losses import WassersteinDiscriminatorLoss

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare_losses as cl  # noqa: E402  (the digits benchmark's harness)

from torchgan_sagan import SAGANDiscriminator, SAGANGenerator, make_trainer  # noqa: E402
from torchgan_sagan.data import embedded_digits  # noqa: E402
from torchgan_sagan.layers import SelfAttention2d, apply_spectral_norm, refresh_spectral_norm, spectral_norm_of  # noqa: E402
from torchgan_sagan.metrics import digit_classifier  # noqa: E402
from torchgan_sagan.models.torchgan_tutorial import tutorial_losses, tutorial_network_params  # noqa: E402

CLIP = tutorial_losses()[1].clip  # the tutorial's weight clipping, (-0.01, 0.01)


# --- one change each, applied to the nets before their optimizers exist -----------------

def _replace_children(net: nn.Module, match: Callable[[nn.Module], bool], make: Callable[[nn.Module], nn.Module]) -> None:
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if match(child):
                setattr(parent, name, make(child))


def torchgan_attention(net: nn.Module, *, spectral_norm: bool = False) -> None:
    """Every attention block becomes ``torchgan.layers.SelfAttention2d``: softmax over the
    queries, C/8 query and key channels, C value channels, no pooling, PyTorch's init."""
    def make(old: SelfAttention2d) -> nn.Module:
        new = TorchganSelfAttention2d(old.input_dims)
        return apply_spectral_norm(new) if spectral_norm else new
    _replace_children(net, lambda m: isinstance(m, SelfAttention2d), make)


def torchgan_spectral_norm(net: nn.Module, *, uv_buffers: bool = False) -> None:
    """torch's spectral-norm parametrization becomes ``torchgan.layers.SpectralNorm2d``
    (same weights). torchgan keeps the power iteration's vectors u, v as parameters, so
    weight clipping clips them too; ``uv_buffers`` keeps them out of ``parameters()``."""
    def make(layer: nn.Module) -> nn.Module:
        parametrize.remove_parametrizations(layer, "weight", leave_parametrized=False)
        wrapped = SpectralNorm2d(layer)
        if uv_buffers:
            for name in ("u", "v"):
                wrapped.register_buffer(name, wrapped._parameters.pop(name).data)
        return wrapped
    _replace_children(net, lambda m: spectral_norm_of(m) is not None, make)


def transposed_spectral_norm(dim: int) -> Callable[[nn.Module], None]:
    """torch's parametrization on transposed convolutions over their input channels
    (``dim=0``: the package's choice and torchgan's ``SpectralNorm2d``'s matrix) or
    their output channels (``dim=1``: torch's default, and this package's before it
    measured worse)."""
    def surgery(net: nn.Module) -> None:
        for m in net.modules():
            if isinstance(m, nn.ConvTranspose2d) and spectral_norm_of(m) is not None:
                parametrize.remove_parametrizations(m, "weight", leave_parametrized=False)
                nn.utils.parametrizations.spectral_norm(m, dim=dim)
        refresh_spectral_norm(net)
    return surgery


def _only(kind: type, surgery: Callable[[nn.Module], None]) -> Callable[[nn.Module], None]:
    """``surgery`` on nets of ``kind`` (G or D) only."""
    return lambda net: surgery(net) if isinstance(net, kind) else None


def pytorch_init(net: nn.Module) -> None:
    """PyTorch's default initialization (each layer's ``reset_parameters``), which the
    tutorial keeps, in place of this package's Xavier-uniform weights and zero biases."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, SpectralNorm2d):
                weight, layer = m.w_bar, m.module
            elif parametrize.is_parametrized(m, "weight"):
                weight, layer = m.parametrizations.weight.original, m
            elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)) and "weight" in m._parameters:
                weight, layer = m.weight, m  # (a layer inside SpectralNorm2d has none)
            else:
                continue
            nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
            if layer.bias is not None:
                bound = 1 / math.sqrt(weight.size(1) * weight[0, 0].numel())  # 1 / sqrt(fan_in)
                nn.init.uniform_(layer.bias, -bound, bound)
    refresh_spectral_norm(net)


def tutorial_blocks(net: nn.Module) -> None:
    """The tutorial's block details: no activation after G's last inner block nor after
    D's last block, and BatchNorm in D's first block."""
    layers = list(net.model)
    inner = [m.module if isinstance(m, SpectralNorm2d) else m for m in layers]  # after tgsn too
    end = max(i for i, m in enumerate(inner) if isinstance(m, nn.ConvTranspose2d)) \
        if isinstance(net, SAGANGenerator) else len(layers)
    last_act = max(i for i, m in enumerate(inner[:end]) if isinstance(m, (nn.ReLU, nn.LeakyReLU)))
    layers.pop(last_act)
    if isinstance(net, SAGANDiscriminator):
        layers.insert(1, nn.BatchNorm2d(inner[0].out_channels))
    net.model = type(net.model)(*layers)


class SelectiveClipLoss(WassersteinDiscriminatorLoss):
    """torchgan's Wasserstein D loss with clipping at 0.01, except for the parameters
    whose names ``skip`` accepts."""

    def __init__(self, skip: Callable[[str], bool]) -> None:
        super().__init__(clip=None)
        self.skip = skip

    def train_ops(self, generator, discriminator, optimizer_discriminator, real_inputs, device, labels=None):
        with torch.no_grad():
            for name, p in discriminator.named_parameters():
                if not self.skip(name):
                    p.clamp_(*CLIP)
        return super().train_ops(generator, discriminator, optimizer_discriminator, real_inputs, device, labels)


def _is_sn_weight(name: str) -> bool:
    return "parametrizations.weight.original" in name


#: step -> (what it changes, how): a dict of config overrides, a function changing a
#: net (G or D) in place before its optimizer exists, or ("loss", D loss factory).
STEPS: Dict[str, Tuple[str, object]] = {
    "tgsn": ("torchgan's SpectralNorm2d in place of torch's parametrization (its u, v are clipped too)",
             torchgan_spectral_norm),
    "tgsn_buf": ("torchgan's SpectralNorm2d with u, v kept out of the clipping",
                 lambda net: torchgan_spectral_norm(net, uv_buffers=True)),
    "tgsn_g": ("torchgan's SpectralNorm2d in G only", _only(SAGANGenerator, torchgan_spectral_norm)),
    "tgsn_d": ("torchgan's SpectralNorm2d in D only", _only(SAGANDiscriminator, torchgan_spectral_norm)),
    "sn_in": ("spectral norm of transposed convolutions over their input channels (torchgan's matrix; "
              "the package's since this ablation)", transposed_spectral_norm(0)),
    "sn_out": ("spectral norm of transposed convolutions over their output channels (torch's default; "
               "the package's before)", transposed_spectral_norm(1)),
    "tgblocks": ("the tutorial's block details: BatchNorm in D's first block, no activation on the last blocks",
                 tutorial_blocks),
    "tgblocks_g": ("the tutorial's block details in G only: no activation after its last inner block",
                   _only(SAGANGenerator, tutorial_blocks)),
    "tgblocks_d": ("the tutorial's block details in D only: BatchNorm in its first block, no activation "
                   "after its last", _only(SAGANDiscriminator, tutorial_blocks)),
    "tgattn": ("torchgan's attention layer as the tutorial has it (no spectral norm on it)",
               torchgan_attention),
    "tgattn_sn": ("torchgan's attention layer (softmax over queries) with spectral norm on its 1x1 convs",
                  lambda net: torchgan_attention(net, spectral_norm=True)),
    "dropin": ("this package's attention in torchgan's layout (C/8 query/key, C value, no pooling; "
               "softmax over keys)", {"attn_layout": "torchgan"}),
    "noclip_sn": ("no clipping of spectral norm's unnormalized weights (`original`)",
                  ("loss", lambda: SelectiveClipLoss(_is_sn_weight))),
    "noclip_gamma": ("no clipping of the attention gains gamma",
                     ("loss", lambda: SelectiveClipLoss(lambda name: name.endswith("gamma")))),
    "tginit": ("PyTorch's default init instead of Xavier-uniform", pytorch_init),
    "nobn": ("no BatchNorm in D (SAGAN's D)", {"d_batchnorm": False}),
    "b09": ("Adam betas (0, 0.9), the SAGAN paper's", {"betas": (0.0, 0.9)}),
    "glr1": ("G's learning rate at the tutorial's 1e-4", {"g_lr": 1e-4}),
    "glr4": ("G's learning rate at D's, 4e-4 (sagan_32's rates)", {"g_lr": 4e-4}),
    # The recipe search on top of the fixed preset.
    "glr8": ("G's learning rate at 8e-4 (sagan_tutorial_64's since this search)", {"g_lr": 8e-4}),
    "dlr2": ("D's learning rate at 2e-4", {"d_lr": 2e-4}),
    "dlr1": ("D's learning rate at the tutorial G's 1e-4", {"d_lr": 1e-4}),
    "b05": ("Adam betas (0.5, 0.999), DCGAN's", {"betas": (0.5, 0.999)}),
    "ema": ("a moving average of G (decay 0.995 from step 200; the scores are the average's)",
            dict(cl.EXTRA_TAGS["ema"])),
    # The loss: the package's hinge pair instead of clipped Wasserstein (no clipping; D's
    # tanh goes, as a tanh makes the hinge pair a bounded Wasserstein loss).
    "hinge": ("the hinge loss (no clipping, no tanh on D's output)", {"loss": "hinge", "d_tanh": False}),
}

#: The steps torchgan's own network takes too ("tutorial+hinge+glr4"), to tell the
#: recipe's share of a difference from the network's.
TUTORIAL_STEPS = ("hinge", "glr4")

#: variant base -> (its compare_losses variant, steps it starts with): the tutorial's
#: network from this package as it is and as it was before this ablation (G at 1e-4,
#: torch's spectral norm on transposed convolutions), and the package's default recipe
#: (sagan_32, hinge), to see a step there too.
BASES = {"tutorial": ("tutorial", []), "ours": ("tutorial-ours", []),
         "old": ("tutorial-ours", ["glr1", "sn_out"]), "hinge": ("hinge", [])}
DEFAULT_VARIANTS = ["tutorial", "old", *(f"old+{s}" for s in STEPS if s not in BASES["old"][1]),
                    "old+tgattn+tginit+tgsn+tgblocks", "ours"]


def parse(spec: str) -> Tuple[str, List[str]]:
    """``"ours+tgsn+tginit"`` -> ``("ours", ["tgsn", "tginit"])``; ValueError naming the
    known steps otherwise."""
    base, *steps = spec.split("+")
    if base not in BASES:
        raise ValueError(f"{spec!r}: a variant starts with one of {', '.join(BASES)}")
    if base == "tutorial" and any(s not in TUTORIAL_STEPS for s in steps):
        raise ValueError(f"{spec!r}: 'tutorial' is torchgan's own network and takes only the recipe "
                         f"steps {', '.join(TUTORIAL_STEPS)}")
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise ValueError(f"{spec!r}: unknown step(s) {unknown}; known: {', '.join(STEPS)}")
    if base == "hinge" and any(isinstance(STEPS[s][1], tuple) for s in steps):
        raise ValueError(f"{spec!r}: the clipping steps change the Wasserstein loss; 'hinge' has none")
    return base, steps


def _changed(cls: type, surgeries: List[Callable[[nn.Module], None]]) -> Callable[..., nn.Module]:
    """A ``network_params`` "name" that builds ``cls`` and applies ``surgeries``."""
    def make(**kwargs) -> nn.Module:
        net = cls(**kwargs)
        for surgery in surgeries:
            surgery(net)
        return net
    return make


def build(spec: str, image_size: int, step_channels: int, workdir: Path, device: str = "cpu"):
    """The trainer of one variant (``compare_losses.run_variant``'s ``build``)."""
    base, steps = parse(spec)
    if base == "tutorial":
        if not steps:
            return cl.build_trainer("tutorial", image_size, step_channels, workdir, device)
        return _tutorial_with_recipe(steps, image_size, step_channels, workdir, device)
    variant, first = BASES[base]
    steps = first + steps
    overrides = {k: v for s in steps if isinstance(STEPS[s][1], dict) for k, v in STEPS[s][1].items()}
    cfg = cl.build_config(variant, image_size, step_channels).replace(**overrides)
    params = cfg.network_params()
    surgeries = [STEPS[s][1] for s in steps if callable(STEPS[s][1])]
    for net in ("generator", "discriminator"):
        params[net]["name"] = _changed(params[net]["name"], surgeries)
    losses = cfg.losses()
    for s in steps:
        if isinstance(STEPS[s][1], tuple):
            losses[1] = STEPS[s][1][1]()
    return make_trainer(cfg, out=workdir, device=device, network_params=params, losses=losses)


def _drop_tanh(net: nn.Module) -> None:
    """The tutorial D without its last tanh (its raw score, as the hinge loss wants)."""
    if not isinstance(net.model[-1], nn.Tanh):
        raise ValueError(f"expected the tutorial discriminator to end with a Tanh, not {net.model[-1]!r}")
    net.model[-1] = nn.Identity()


def _tutorial_with_recipe(steps: List[str], image_size: int, step_channels: int, workdir: Path, device: str):
    """torchgan's tutorial network under a changed recipe (:data:`TUTORIAL_STEPS`)."""
    overrides = {k: v for s in steps for k, v in STEPS[s][1].items()}
    cfg = cl.build_config("tutorial", image_size, step_channels).replace(**overrides)
    rates = {k: overrides[k] for k in ("g_lr", "d_lr") if k in overrides}
    params = tutorial_network_params(encoding_dims=cfg.encoding_dims, image_size=image_size, channels=1,
                                     step_channels=step_channels, **rates)
    if overrides.get("d_tanh") is False:
        params["discriminator"]["name"] = _changed(params["discriminator"]["name"], [_drop_tanh])
    return make_trainer(cfg, out=workdir, device=device, network_params=params)


def write_markdown(summary: Dict, path: Path) -> None:
    meta, results = summary["meta"], summary["results"]
    reference = next((k for k in ("old", "ours") if k in results), None)
    ours = results[reference]["fid"] if reference else None
    lines = ["# torchgan's tutorial network against this package's version of it: ablation", "",
             f"Command: `{meta['command']}`. Date: {meta['date']}. Machine: {meta['machine']}. torch {meta['torch']}.",
             "", f"{meta['iters']} iterations (batch {meta['batch']}, step_channels {meta['step_channels']}), "
             f"seeds {meta['seeds']} (merged runs: each run's own, as its command says), digits at 32x32; "
             f"FID in the digit classifier's features on {meta['samples']} samples, mean ± std over seeds "
             "(lower is better).", "",
             f"| variant | change | seeds | FID | KID | classes hit | {f'vs {reference}' if reference else ''} | "
             "G's own FID (moving-average runs) |",
             "|---|---|---|---|---|---|---|---|"]
    for spec, r in results.items():
        base, steps = parse(spec)
        changes = [STEPS[s][0] for s in steps]
        if base == "tutorial":
            changes.insert(0, "torchgan's network from torchgan's layers")
        about = "; ".join(changes) or "sagan_tutorial_64" + (" as it was" if spec == "old" else "")
        delta = f"{r['fid']['mean'] - ours['mean']:+.2f}" if ours and spec != reference else ""
        live = f"{r['fid_live']['mean']:.2f} ± {r['fid_live']['std']:.2f}" if "fid_live" in r else ""
        lines.append(f"| {spec} | {about} | {len(r['fid']['per_seed'])} | "
                     f"{r['fid']['mean']:.2f} ± {r['fid']['std']:.2f} | "
                     f"{r['kid']['mean']:.4f} ± {r['kid']['std']:.4f} | {r['classes_hit']['mean']:.1f} | {delta} | "
                     f"{live} |")
    path.write_text("\n".join(lines) + "\n")


def combine(folders: List[Path], out: Path) -> int:
    """One table from the ``results.json`` of several runs (same settings)."""
    merged = cl.merge_results(folders, "tutorial_ablation.py")
    if merged is None:
        return 2
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(merged, indent=2))
    write_markdown(merged, out / "results.md")
    print(f"{len(merged['results'])} variants from {len(folders)} runs -> {out / 'results.md'}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Ablation: torchgan's tutorial SAGAN against this package's.")
    p.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS,
                   help=f"'tutorial', 'ours', or 'ours+STEP+...' with STEP in: {', '.join(STEPS)}")
    p.add_argument("--seeds", type=int, nargs="+", help="default: 0 1 2 (quick: 0)")
    p.add_argument("--iters", type=int, help="training iterations per run (default 1200)")
    p.add_argument("--quick", action="store_true", help="tiny smoke run")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=Path("runs/tutorial_ablation"))
    p.add_argument("--combine", type=Path, nargs="+", metavar="DIR",
                   help="train nothing: merge the results of runs split across processes (their --out "
                        "folders, in order) into one table in --out")
    args = p.parse_args(argv)
    if args.combine:
        return combine(args.combine, args.out)
    try:
        for spec in args.variants:
            parse(spec)
    except ValueError as err:
        print(f"tutorial_ablation.py: error: {err}", file=sys.stderr)
        return 2
    if args.iters is not None and args.iters < 1:
        print("tutorial_ablation.py: error: --iters must be at least 1", file=sys.stderr)
        return 2
    settings = dict(cl.QUICK if args.quick else cl.FULL, device=args.device)
    settings["seeds"] = args.seeds or settings["seeds"]
    settings["iters"] = args.iters or settings["iters"]
    settings["eval_every"] = settings["iters"]
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    classifier = digit_classifier(verbose=True)
    dataset = embedded_digits(32)
    command = " ".join(["python examples/tutorial_ablation.py", *(sys.argv[1:] if argv is None else argv)])
    summary = {"meta": {"command": command, "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__,
                        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs", **settings}, "results": {}}
    for spec in args.variants:
        runs = [cl.run_variant(spec, seed, dataset, classifier, settings, args.out / "work" / spec, print,
                               build=build) for seed in settings["seeds"]]
        summary["results"][spec] = {k: v for k, v in cl.summarize(runs).items() if k != "at_budget"}
        fid = summary["results"][spec]["fid"]
        print(f"{spec}: FID {fid['mean']:.2f} ± {fid['std']:.2f}  ({time.time() - started:.0f} s so far)", flush=True)
        # Written after every variant, so that a long run's finished part is kept.
        (args.out / "results.json").write_text(json.dumps(summary, indent=2))
        write_markdown(summary, args.out / "results.md")
    print(f"done in {time.time() - started:.0f} s; results in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
