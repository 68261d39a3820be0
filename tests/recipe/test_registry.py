import pytest

from torchgan_sagan import SAGANConfig, get_config, list_configs, register_config
from torchgan_sagan.recipe import registry as registry_module


def test_overrides_win_and_are_validated():
    cfg = get_config("sagan_celeba_64", step_channels=32, loss="least_squares")
    assert (cfg.step_channels, cfg.loss) == (32, "least_squares")
    assert get_config("sagan_celeba_64").step_channels == 64  # the registry is not changed
    with pytest.raises(ValueError, match=r"unknown override\(s\) \['step_chanels'\]"):
        get_config("sagan_celeba_64", step_chanels=32)
    with pytest.raises(ValueError, match="image_size must be base x 2.*nearest: 48 or 56"):
        get_config("sagan_celeba_64", image_size=50)
    with pytest.raises(ValueError, match=r"loss must be one of \['hinge'"):
        get_config("sagan_celeba_64", loss="nonsense")
    with pytest.raises(ValueError, match=r"g_attn_resolutions contains 64"):
        get_config("sagan_32", g_attn_resolutions=(64,))
    with pytest.raises(ValueError, match="betas must be two numbers"):
        get_config("sagan_32", betas=(0.5,))
    with pytest.raises(ValueError, match="ncritic must be a non-zero integer"):
        get_config("sagan_32", ncritic=0)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown config 'sagan_64'; known configs: .*sagan_celeba_64"):
        get_config("sagan_64")


def test_list_configs_filters_with_wildcards():
    assert "sagan_celeba_64" in list_configs("sagan_*")
    assert list_configs("*_64") == ["sagan_celeba_64", "sagan_resnet_celeba_64", "sagan_tutorial_64",
                                      "sagan_tutorial_hinge_64"]
    assert list_configs("sagan_?2*") == ["sagan_128", "sagan_32"]
    assert list_configs("nothing*") == []


def test_register_by_decorator_and_reject_duplicates(monkeypatch):
    monkeypatch.setattr(registry_module, "_REGISTRY", dict(registry_module._REGISTRY))

    @register_config
    def my_sagan_16() -> SAGANConfig:
        """A tiny test recipe."""
        return SAGANConfig(image_size=16, g_attn_resolutions=(8,), d_attn_resolutions=(8,))

    assert "my_sagan_16" in list_configs()
    assert get_config("my_sagan_16").source == "A tiny test recipe."
    with pytest.raises(ValueError, match="'my_sagan_16' is already registered"):
        register_config(my_sagan_16)
