"""The CUDA path, seen on a CPU through PyTorch's fake tensors.

Under ``FakeTensorMode`` with ``cuda`` as the default device, nets are built with fake
CUDA parameters and run through the real dispatch without a GPU: a tensor left on the
CPU raises a device-mismatch error, and reading a value back to the host (``.item()``,
``int(t)``, data-dependent shapes) raises ``DataDependentOutputException``. So every
test here fails if a forward pass would put a tensor on the wrong device or stall the
GPU with a host sync. Backward passes need a real CUDA context and are not covered;
nor is bf16 autocast, which torch turns off where CUDA is not available, nor
channels-last, whose in-place conversion of spectrally normalized weights fake tensors
cannot swap.
"""

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from torchgan_sagan import get_config, list_configs
from torchgan_sagan.augment import diff_augment
from torchgan_sagan.models import BACKBONES

EXTRAS = {
    "plain": {},
    "ema-diffaugment": {"ema_decay": 0.9, "ema_start": 0, "diffaugment": "color,translation,cutout"},
}
#: The cases of the fast tier (a plain and a conditional net with every option); the rest are slow.
FAST = {("sagan_32", "plain"), ("sagan_cond_digits_32", "ema-diffaugment")}
#: Every preset runs with every option: its nets in training and evaluation, the moving
#: average's copy and its update. Without the options (plain) the same nets run with
#: fewer parts, so plain is checked on one net of each backbone only.
PLAIN = {"sagan_32", "sagan_resnet_cifar_32"}
CASES = [(name, extra) if (name, extra) in FAST else pytest.param(name, extra, marks=pytest.mark.slow)
         for name in list_configs() for extra in EXTRAS if extra != "plain" or name in PLAIN]
CASES.append(pytest.param("sagan_32", "unfused-torchgan-layout", marks=pytest.mark.slow))
EXTRAS["unfused-torchgan-layout"] = {"attn_fused": False, "attn_layout": "torchgan"}


@pytest.mark.parametrize("name, extra", CASES)
def test_nets_run_on_cuda_without_host_syncs(name, extra):
    cfg = get_config(name, step_channels=8, **EXTRAS[extra])
    with FakeTensorMode():
        with torch.device("cuda"):  # built on the (fake) GPU
            g_class, d_class = BACKBONES[cfg.backbone]  # the residual nets for the sagan_resnet_* configs
            g, d = g_class(**cfg.generator_args()), d_class(**cfg.discriminator_args())
            assert type(g).__name__.startswith("SAGANResNet") == (cfg.backbone == "resnet")
            z = torch.randn(4, cfg.encoding_dims)
            labels = (torch.randint(0, cfg.num_classes, (4,)),) if cfg.num_classes else ()
        # Run without CUDA as the default device: a tensor that forward creates without
        # a device lands on the CPU, as on a real machine, and the mismatch raises.
        for training in (True, False):
            g.train(training)
            d.train(training)
            images = g(z, *labels)
            logits = d(images, *labels)
            assert images.device.type == "cuda" and images.dtype == torch.float32
            assert logits.device.type == "cuda" and logits.shape == (4,)
        if g.ema is not None:
            g.ema.update(g.model)  # the average's update after an optimizer step
            g.ema.count_on_device = True  # as in a CUDA graph: count and decay on the device
            g.ema.update(g.model)
        g_loss_of, d_loss_of = cfg.losses()[:2]  # the config's own loss pair
        d_loss = d_loss_of(d(images, *labels), logits)
        g_loss = g_loss_of(logits)
        assert d_loss.device.type == "cuda" and g_loss.shape == ()


def test_diffaugment_runs_on_cuda_without_host_syncs():
    with FakeTensorMode():
        images = torch.rand(4, 3, 32, 32, device="cuda") * 2 - 1
        assert diff_augment(images).device.type == "cuda"


def test_the_detector_catches_a_host_sync_and_a_cpu_tensor():
    """The two kinds of bug these tests look for do raise under fake CUDA."""
    from torch._subclasses.fake_tensor import DataDependentOutputException

    with FakeTensorMode():
        x = torch.randn(4, device="cuda")
        with pytest.raises(DataDependentOutputException):
            x.sum().item()
        with pytest.raises(Exception, match="(?i)device"):
            x + torch.ones(4)  # created on the CPU
