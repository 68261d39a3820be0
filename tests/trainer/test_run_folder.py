import json

import pytest
import torch

from torchgan_sagan import SAGANConfig, get_config
from torchgan_sagan.trainer.checkpoints import load_checkpoint
from torchgan_sagan.trainer.run_folder import load_generator, read_config, resolve_checkpoint, write_config


@pytest.mark.parametrize("name", ["sagan_faces_32", "sagan_cond_digits_32", "sagan_tutorial_64"])
def test_config_round_trips_through_a_run_folder(name, tmp_path):
    cfg = get_config(name, ema_decay=0.99, diffaugment="color", g_attn_resolutions=(8, 16))
    write_config(cfg, tmp_path)
    assert read_config(tmp_path) == cfg
    assert SAGANConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_a_run_records_its_config_in_the_folder_and_every_checkpoint(tiny_run):
    cfg = read_config(tiny_run)
    assert (cfg.image_size, cfg.step_channels, cfg.image_channels) == (32, 8, 1)
    checkpoint = load_checkpoint(tiny_run / "checkpoints" / "gan0.model")
    assert SAGANConfig.from_dict(checkpoint["sagan_config"]) == cfg


@pytest.mark.parametrize("run", ["tiny_run", "tiny_conditional_run", "tiny_resnet_run"])
def test_load_generator_rebuilds_the_trained_generator(run, request):
    folder = request.getfixturevalue(run)
    generator = load_generator(folder)
    assert not generator.training
    state = load_checkpoint(folder / "checkpoints" / "gan0.model")["generator"]
    for key, value in generator.state_dict().items():
        assert torch.equal(value, state[key]), key
    z = torch.randn(3, generator.encoding_dims)
    if generator.num_classes:
        assert generator.ema is not None and int(generator.ema.steps) == 2
        images = generator(z, torch.tensor([0, 5, 9]))
        generator.use_ema = False
        assert not torch.equal(images, generator(z, torch.tensor([0, 5, 9])))  # eval mode runs the average
    else:
        images = generator(z)
    assert images.shape == (3, 1, 32, 32)
    assert load_generator(folder / "checkpoints" / "gan0.model").config == generator.config


def test_a_checkpoint_without_a_config_gets_a_clear_message(tmp_path, tiny_images):
    from torchgan_sagan import make_trainer

    cfg = get_config("sagan_32", image_channels=1, step_channels=8)
    trainer = make_trainer(cfg, out=tmp_path, device="cpu", network_params=cfg.network_params())
    trainer.save_model(0)
    assert not (tmp_path / "config.json").exists()  # other nets: no config recorded
    with pytest.raises(ValueError, match="records no config"):
        load_generator(tmp_path)


def test_a_config_from_another_release_gets_a_clear_message(tmp_path):
    data = get_config("sagan_32").to_dict()
    (tmp_path / "config.json").write_text(json.dumps({**data, "version": 99}))
    with pytest.raises(ValueError, match="has version 99"):
        read_config(tmp_path)
    data["fields"]["new_option"] = 1
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"does not know: \['new_option'\]"):
        read_config(tmp_path)


def test_resolve_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_checkpoint(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match=r"no checkpoint \(\*.model\)"):
        resolve_checkpoint(tmp_path)
