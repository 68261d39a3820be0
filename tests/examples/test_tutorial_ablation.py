"""examples/tutorial_ablation.py: each step changes what it says, and the script runs."""

import json
import math
import os
from pathlib import Path
from unittest import mock

import pytest
import torch
from torch.nn.utils import parametrize
from torchgan.layers import SelfAttention2d as TorchganSelfAttention2d
from torchgan.layers import SpectralNorm2d

from torchgan_sagan import train_step
from torchgan_sagan.layers import SelfAttention2d

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "tutorial_ablation.py"


@pytest.fixture(scope="module")
def ablation(load_script):
    """The script as a module (its harness sets logging switches in the environment,
    which load_script keeps from leaking into later tests)."""
    return load_script(SCRIPT)


def nets(ablation, spec, tmp_path):
    torch.manual_seed(0)
    trainer = ablation.build(spec, 32, 8, tmp_path, "cpu")
    return trainer, trainer.generator, trainer.discriminator


def kinds(net):
    return [type(m.module if isinstance(m, SpectralNorm2d) else m).__name__ for m in net.model]


def test_torchgan_attention_replaces_every_block(ablation, tmp_path):
    _, g0, d0 = nets(ablation, "ours", tmp_path)
    _, g, d = nets(ablation, "ours+tgattn", tmp_path)
    for before, after in ((g0, g), (d0, d)):
        ours = sum(isinstance(m, SelfAttention2d) for m in before.modules())
        assert ours == 2
        assert sum(isinstance(m, SelfAttention2d) for m in after.modules()) == 0
        assert sum(isinstance(m, TorchganSelfAttention2d) for m in after.modules()) == ours
    _, g, _ = nets(ablation, "ours+tgattn_sn", tmp_path)
    attn = next(m for m in g.modules() if isinstance(m, TorchganSelfAttention2d))
    assert parametrize.is_parametrized(attn.query, "weight")


def test_torchgan_spectral_norm_keeps_the_weights_and_exposes_u_v_to_clipping(ablation, tmp_path):
    _, g0, d0 = nets(ablation, "ours", tmp_path)
    _, g, d = nets(ablation, "ours+tgsn", tmp_path)
    for before, after in ((g0, g), (d0, d)):
        normalized = sum(parametrize.is_parametrized(m, "weight") for m in before.modules())
        assert sum(isinstance(m, SpectralNorm2d) for m in after.modules()) == normalized > 0
        assert not any(parametrize.is_parametrized(m, "weight") for m in after.modules())
    # The unnormalized weights are kept.
    original = d0.model[0].parametrizations.weight.original.detach().clone()
    ablation.torchgan_spectral_norm(d0)
    assert torch.equal(d0.model[0].w_bar, original)
    names = [n for n, _ in d.named_parameters()]
    assert "model.0.u" in names and "model.0.v" in names
    _, _, d = nets(ablation, "ours+tgsn_buf", tmp_path)
    names = [n for n, _ in d.named_parameters()]
    assert "model.0.u" not in names and "model.0.u" in dict(d.named_buffers())


def test_pytorch_init_draws_within_the_default_bounds(ablation, tmp_path):
    _, _, d0 = nets(ablation, "ours", tmp_path)
    _, _, d = nets(ablation, "ours+tginit", tmp_path)
    w0 = d0.model[0].parametrizations.weight.original
    w = d.model[0].parametrizations.weight.original
    bound = 1 / math.sqrt(w[0].numel())  # kaiming_uniform(a=sqrt(5)): 1 / sqrt(fan_in)
    assert w.abs().max() <= bound and w.abs().max() > 0.9 * bound
    assert not torch.equal(w, w0)
    assert d.model[0].bias.abs().max() > 0  # biases drawn too, not zero


def test_old_is_the_preset_before_the_fix(ablation, tmp_path):
    from torchgan_sagan.layers import spectral_norm_of

    for spec, dim, g_lr in (("ours", 0, 8e-4), ("old", 1, 1e-4), ("old+sn_in", 0, 1e-4), ("hinge+sn_out", 1, 4e-4)):
        trainer, g, _ = nets(ablation, spec, tmp_path)
        dims = {spectral_norm_of(m).dim for m in g.modules() if isinstance(m, torch.nn.ConvTranspose2d)}
        assert dims == {dim}, spec
        assert trainer.optimizer_generator.param_groups[0]["lr"] == g_lr


def test_tutorial_blocks_give_the_tutorials_layer_sequence(ablation, tmp_path):
    from torchgan_sagan.models.torchgan_tutorial import tutorial_network_params

    params = tutorial_network_params(image_size=32, channels=1, step_channels=8)
    tutorial_g = params["generator"]["name"](**params["generator"]["args"])
    tutorial_d = params["discriminator"]["name"](**params["discriminator"]["args"])
    _, g, d = nets(ablation, "ours+tgattn+tginit+tgsn+tgblocks", tmp_path)
    assert kinds(g) == kinds(tutorial_g)
    assert kinds(d) + ["Conv2d", "Tanh"] == kinds(tutorial_d)  # our D's head is separate
    _, g0, d0 = nets(ablation, "ours", tmp_path)
    assert kinds(g0) != kinds(tutorial_g)


@pytest.mark.parametrize("spec, unclipped", [("ours+noclip_gamma", "gamma"),
                                             ("ours+noclip_sn", "parametrizations.weight.original")])
def test_selective_clipping_skips_only_what_it_names(ablation, tmp_path, spec, unclipped):
    trainer, _, d = nets(ablation, spec, tmp_path)
    with torch.no_grad():
        for p in d.parameters():
            p.fill_(0.5)
    train_step(trainer, torch.rand(4, 1, 32, 32) * 2 - 1)
    # Clipping runs before D's step, which moves a parameter by about one learning rate.
    step = 2e-3
    for name, p in d.named_parameters():
        if unclipped in name:
            assert p.min() > 0.5 - step, name
        else:
            assert p.max() <= 0.01 + step, name


@pytest.mark.slow
def test_quick_run_and_combine(ablation, tmp_path, classifier_cache, digit_classifier):
    env = {"TORCHGAN_SAGAN_CACHE": str(classifier_cache)}
    with mock.patch.dict(os.environ, env):
        assert ablation.main(["--quick", "--variants", "ours", "ours+tgsn", "--out", str(tmp_path / "a")]) == 0
        assert ablation.main(["--quick", "--variants", "tutorial", "--out", str(tmp_path / "b")]) == 0
    assert ablation.main(["--combine", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "c")]) == 0
    merged = json.loads((tmp_path / "c" / "results.json").read_text())
    assert list(merged["results"]) == ["ours", "ours+tgsn", "tutorial"]
    table = (tmp_path / "c" / "results.md").read_text()
    ours = merged["results"]["ours"]["fid"]["mean"]
    tutorial = merged["results"]["tutorial"]["fid"]["mean"]
    assert f"| {tutorial - ours:+.2f} |" in table


def test_bad_input_exits_with_a_message(ablation, tmp_path, capsys):
    assert ablation.main(["--variants", "ours+nosuchstep"]) == 2
    assert "unknown step(s) ['nosuchstep']" in capsys.readouterr().err
    assert ablation.main(["--variants", "tutorial+tgsn"]) == 2
    assert "takes only the recipe steps hinge, glr4" in capsys.readouterr().err
    assert ablation.main(["--combine", str(tmp_path / "missing"), "--out", str(tmp_path / "c")]) == 2
    assert "no results in" in capsys.readouterr().err
    with pytest.raises(ValueError, match="starts with one of tutorial, ours, old, hinge"):
        ablation.parse("minimax+tgsn")
    with pytest.raises(ValueError, match="'hinge' has none"):
        ablation.parse("hinge+noclip_gamma")


def test_recipe_steps_set_the_optimizers_and_the_average(ablation, tmp_path):
    trainer, g, _ = nets(ablation, "ours+glr8+dlr2+b05", tmp_path)
    g_group = trainer.optimizer_generator.param_groups[0]
    d_group = trainer.optimizer_discriminator.param_groups[0]
    assert (g_group["lr"], d_group["lr"]) == (8e-4, 2e-4)
    assert g_group["betas"] == d_group["betas"] == (0.5, 0.999)
    assert getattr(g, "ema", None) is None
    _, g, _ = nets(ablation, "ours+ema", tmp_path)
    assert (g.ema.decay, g.ema.start) == (0.995, 200)


def test_the_hinge_step_swaps_the_loss_on_either_network(ablation, tmp_path):
    trainer, _, d = nets(ablation, "ours+hinge", tmp_path)
    assert sorted(trainer.losses) == ["HingeDiscriminatorLoss", "HingeGeneratorLoss"]
    assert isinstance(d.last_nonlinearity, torch.nn.Identity)
    tutorial, _, _ = nets(ablation, "tutorial", tmp_path)
    assert isinstance(tutorial.discriminator.model[-1], torch.nn.Tanh)
    assert tutorial.optimizer_generator.param_groups[0]["lr"] == 1e-4
    trainer, _, d = nets(ablation, "tutorial+hinge+glr4", tmp_path)
    assert sorted(trainer.losses) == ["HingeDiscriminatorLoss", "HingeGeneratorLoss"]
    assert isinstance(d.model[-1], torch.nn.Identity)
    assert [type(m) for m in d.model[:-1]] == [type(m) for m in tutorial.discriminator.model[:-1]]
    assert trainer.optimizer_generator.param_groups[0]["lr"] == 4e-4
    train_step(trainer, torch.rand(4, 1, 32, 32) * 2 - 1)
    assert torch.isfinite(d(torch.zeros(2, 1, 32, 32))).all()
