"""The standard scores against torch-fidelity's own pipeline (images read from files)."""

import pytest
import torch
import torch.nn.functional as F
from torchvision.utils import save_image

from torchgan_sagan.metrics.inception import inception_fid
from torchgan_sagan.metrics.inception import fold_batch_norm
from torchgan_sagan.metrics.standard import protocol_name, standard_scores

pytestmark = pytest.mark.slow


def _smooth(n: int, contrast: float, seed: int) -> torch.Tensor:
    """n RGB images 48x48 in [-1, 1] (another size than Inception's 299: the resize is
    where implementations differ), upsampled from 6x6 noise."""
    coarse = torch.rand(n, 3, 6, 6, generator=torch.Generator().manual_seed(seed)) * 2 - 1
    return (F.interpolate(coarse, size=(48, 48), mode="bilinear") * contrast).clamp(-1, 1)


def test_scores_equal_torch_fidelitys_from_the_same_images_saved_as_files(tmp_path, inception_weights):
    torch_fidelity = pytest.importorskip("torch_fidelity")
    real, fake = _smooth(16, 1.0, 0), _smooth(16, 0.6, 1)
    for name, images in (("real", real), ("fake", fake)):
        (tmp_path / name).mkdir()
        for i, image in enumerate(images):
            save_image((image + 1) / 2, tmp_path / name / f"{i:03d}.png")
    ours = standard_scores(fake, real, weights_path=inception_weights, cache_dir=tmp_path / "cache")
    theirs = torch_fidelity.calculate_metrics(
        input1=str(tmp_path / "fake"), input2=str(tmp_path / "real"), cuda=False, fid=True, kid=True, isc=True,
        prc=True, feature_extractor="inception-v3-compat", feature_layer_prc="2048",
        feature_extractor_weights_path=str(inception_weights), kid_subset_size=16, verbose=False)
    assert ours["fid"] > 1  # the two sets differ: the comparison is not of zeros
    assert ours["fid"] == pytest.approx(theirs["frechet_inception_distance"], rel=1e-3)
    assert ours["kid"]["mean"] == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-3)
    assert ours["inception_score"]["mean"] == pytest.approx(theirs["inception_score_mean"], rel=1e-3)
    assert (ours["precision"], ours["recall"]) == pytest.approx((theirs["precision"], theirs["recall"]), abs=1e-6)
    # The per-epoch metric's FID (torchmetrics, same network) agrees too.
    assert inception_fid(real, fake, inception_weights) == pytest.approx(ours["fid"], rel=1e-3)


def test_folding_batch_norm_keeps_the_features(inception_weights):
    """The stand-in's BatchNorms are at identity, which any fold keeps: give them
    statistics of their own first, so that a wrong scale or shift shows."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                      feature_extractor_weights_path=str(inception_weights)).eval()
    rng = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for norm in (m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            shape = norm.running_mean.shape
            norm.running_mean.copy_(torch.randn(shape, generator=rng) * 0.3)
            norm.running_var.copy_(torch.rand(shape, generator=rng) + 0.5)
            norm.weight.copy_(torch.rand(shape, generator=rng) + 0.5)
            norm.bias.copy_(torch.randn(shape, generator=rng) * 0.1)
    images = (_smooth(3, 1.0, 2).add(1).mul(127.5)).to(torch.uint8)
    with torch.no_grad():
        before = net(images)
        with pytest.raises(ValueError, match="eval mode"):
            fold_batch_norm(net.train())
        folded = fold_batch_norm(net.eval())
        after = folded.to(memory_format=torch.channels_last)(images)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    for b, a in zip(before, after):
        assert b.abs().max() > 0 and torch.allclose(a, b, rtol=1e-4, atol=1e-4 * b.abs().max().item())


def test_protocol_names():
    assert [protocol_name("FID", n) for n in (50_000, 1000, 1500)] == ["FID-50k", "FID-1k", "FID-1500"]


def test_the_weights_come_from_torch_fidelitys_own_address():
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    from torchgan_sagan.metrics import inception

    assert inception.INCEPTION_URL == URL_INCEPTION_V3 and URL_INCEPTION_V3.endswith(inception.INCEPTION_FILE)


def _peak_tensor_bytes(fn) -> int:
    """The most tensor memory alive at once during ``fn()``, from the profiler's
    allocation and free events replayed in order."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                    key=lambda e: e.start_ns())
    live = peak = 0
    for event in events:
        live += event.nbytes()
        peak = max(peak, live)
    return peak


def test_precision_recall_take_the_samples_distances_in_blocks(monkeypatch):
    """At 50,000 samples, all sample-to-sample distances are 10 GB: an evaluation was
    killed for memory after two hours of Inception. Here 3,000 samples' would be 36 MB."""
    from torch_fidelity.metric_prc import prc_features_to_metric

    from torchgan_sagan.metrics import standard

    monkeypatch.setattr(standard, "PRC_BLOCK", 300)
    rng = torch.Generator().manual_seed(0)
    real, fake = torch.randn(200, 64, generator=rng), torch.randn(3000, 64, generator=rng)
    scores = {}
    peak = _peak_tensor_bytes(lambda: scores.update(standard.precision_recall(fake, real)))
    assert peak < 3000 * 3000 * 4 / 2, peak / 2**20
    whole = prc_features_to_metric(fake, real, verbose=False)  # torch-fidelity's default: all at once
    assert 0 < scores["recall"] < 1 and 0 < scores["precision"] < 1
    assert (scores["precision"], scores["recall"]) == pytest.approx((whole["precision"], whole["recall"]), abs=1e-9)
    assert _peak_tensor_bytes(lambda: prc_features_to_metric(fake, real, verbose=False)) > 3000 * 3000 * 4
