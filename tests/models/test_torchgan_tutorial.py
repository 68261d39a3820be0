import torch
from torchgan.layers import SelfAttention2d as TorchganSelfAttention2d

from torchgan_sagan import get_config, make_trainer, train_step
from torchgan_sagan.models.torchgan_tutorial import tutorial_losses, tutorial_network_params


def test_tutorial_network_has_the_tutorials_shape_and_trains(tmp_path):
    params = tutorial_network_params(step_channels=8)
    g = params["generator"]["name"](**params["generator"]["args"])
    d = params["discriminator"]["name"](**params["discriminator"]["args"])
    attn_g = [m.query.in_channels for m in g.modules() if isinstance(m, TorchganSelfAttention2d)]
    attn_d = [m.query.in_channels for m in d.modules() if isinstance(m, TorchganSelfAttention2d)]
    assert attn_g == [16, 8] and attn_d == [32, 64]  # 2d, d in G; 4d, 8d in D
    assert params["generator"]["optimizer"]["args"] == {"lr": 1e-4, "betas": (0.0, 0.999)}
    assert tutorial_losses()[1].clip == (-0.01, 0.01)
    cfg = get_config("sagan_tutorial_64", step_channels=8, sample_size=2)
    trainer = make_trainer(cfg, out=tmp_path, device="cpu", network_params=params, losses=tutorial_losses())
    train_step(trainer, torch.rand(2, 3, 64, 64) * 2 - 1)
    info = trainer.loss_information
    assert (info["generator_iters"], info["discriminator_iters"]) == (1, 1)
