import torch
from torchgan.trainer import Trainer

from torchgan_sagan import get_config, make_trainer, train_step


def test_make_trainer_puts_every_file_under_out(tmp_path):
    cfg = get_config("sagan_32", image_channels=1, step_channels=8, epochs=3, ncritic=2, sample_size=9)
    trainer = make_trainer(cfg, out=tmp_path / "run", device="cpu")
    assert isinstance(trainer, Trainer)
    assert trainer.checkpoints == str(tmp_path / "run" / "checkpoints" / "gan")
    assert trainer.recon == str(tmp_path / "run" / "samples")
    assert (trainer.epochs, trainer.ncritic, trainer.sample_size) == (3, 2, 9)
    assert trainer.device == torch.device("cpu")
    assert {p.name for p in (tmp_path / "run").iterdir()} == {"samples", "checkpoints", "logs", "config.json"}


def test_make_trainer_accepts_other_nets_losses_and_trainer_arguments(tmp_path):
    cfg = get_config("sagan_32", image_channels=1, step_channels=8)
    params = get_config("sagan_32", image_channels=1, step_channels=16).network_params()
    losses = get_config("sagan_32", loss="least_squares").losses()
    trainer = make_trainer(cfg, out=tmp_path, device="cpu", network_params=params, losses=losses, epochs=7)
    assert trainer.generator.step_channels == 16 and trainer.epochs == 7
    assert [type(x).__name__ for x in trainer.losses.values()] == ["LeastSquaresGeneratorLoss",
                                                          "LeastSquaresDiscriminatorLoss"]


def test_train_step_runs_what_the_trainer_runs_per_batch(tmp_path):
    cfg = get_config("sagan_32", image_channels=1, step_channels=8, ncritic=2)
    trainer = make_trainer(cfg, out=tmp_path, device="cpu")
    images = torch.rand(4, 1, 32, 32) * 2 - 1
    for _ in range(2):
        lgen, ldis = train_step(trainer, images)
    info = trainer.loss_information
    # ncritic=2: a D step every iteration, a G step every second one.
    assert (info["discriminator_iters"], info["generator_iters"]) == (2, 1)
    assert trainer.batch_size == 4 and trainer.real_inputs is not None
    assert lgen == 0.0 and ldis.shape == ()  # no G step this time; D's loss, a device scalar
    assert trainer.logger.iteration == 2  # the logger's per-iteration hook ran


def test_cuda_settings_default_on_for_cuda_and_leave_the_cpu_alone():
    from torchgan_sagan.trainer.trainer import cuda_settings

    saved = (torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    try:
        torch.backends.cudnn.benchmark = torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        assert cuda_settings("cpu") == {} and torch.backends.cudnn.benchmark is False
        assert cuda_settings(torch.device("cuda", 0)) == {"cudnn_benchmark": True, "tf32": True}
        assert torch.backends.cudnn.benchmark and torch.backends.cuda.matmul.allow_tf32
        assert cuda_settings("cuda", tf32=False)["tf32"] is False and not torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def test_the_configs_adam_is_fused_on_cuda_only(tmp_path):
    from torchgan_sagan.trainer.trainer import fused_adam

    cfg = get_config("sagan_32", image_channels=1, step_channels=8)
    on_cuda = fused_adam(cfg.network_params(), True)
    assert [net["optimizer"]["args"]["fused"] for net in on_cuda.values()] == [True, True]
    assert on_cuda["generator"]["optimizer"]["args"]["lr"] == cfg.g_lr  # the rest as it was
    assert all("fused" not in net["optimizer"]["args"] for net in fused_adam(cfg.network_params(), False).values())
    trainer = make_trainer(cfg, out=tmp_path, device="cpu")
    assert not trainer.optimizer_generator.param_groups[0]["fused"]
