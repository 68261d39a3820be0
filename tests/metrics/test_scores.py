import pytest
import torch

from torchgan_sagan import SAGANGenerator, get_config, make_trainer
from torchgan_sagan.data import embedded_digits
from torchgan_sagan.metrics import (
    FID,
    KID,
    ClassCoverage,
    DigitClassifier,
    class_coverage,
    fid,
    generate,
    inception_fid,
    kid,
)


@pytest.fixture(scope="module")
def digits():
    return embedded_digits(32).tensors


def test_classifier_reaches_97_percent_and_is_cached(digit_classifier, classifier_cache):
    assert digit_classifier.test_accuracy >= 0.97
    cached = digit_classifier.__class__  # loading again reads the file instead of training
    again = __import__("torchgan_sagan.metrics", fromlist=["x"]).digit_classifier(cache_dir=classifier_cache)
    assert isinstance(again, cached) and again.test_accuracy == digit_classifier.test_accuracy
    for a, b in zip(again.state_dict().values(), digit_classifier.state_dict().values()):
        assert torch.equal(a, b)
    assert list(classifier_cache.glob("digit_classifier-*.pt"))  # written, whole (no temporary left)
    assert not list(classifier_cache.glob(".tmp-*"))


def test_features_accept_any_size_and_rgb(digit_classifier):
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    assert digit_classifier.features(x).shape == (2, DigitClassifier.num_features)
    with pytest.raises(ValueError, match=r"expected images of shape \(B, 1 or 3, H, W\)"):
        digit_classifier.features(torch.rand(2, 2, 8, 8))


def test_fid_near_zero_for_real_splits_and_large_for_noise(digits, digit_classifier):
    images, _ = digits
    perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    a, b = images[perm[:850]], images[perm[850:1700]]
    real_vs_real = fid(a, b, digit_classifier)
    noise = torch.rand(850, 1, 32, 32) * 2 - 1
    real_vs_noise = fid(a, noise, digit_classifier)
    assert real_vs_real < 0.05 * real_vs_noise
    assert real_vs_real < 2.0 and real_vs_noise > 20


def test_kid_near_zero_for_real_splits_and_large_for_noise(digits, digit_classifier):
    images, _ = digits
    a, b = images[0::2], images[1::2]
    same = kid(a, b, digit_classifier, subsets=10, subset_size=200)
    noise = kid(a, torch.rand(500, 1, 32, 32) * 2 - 1, digit_classifier, subsets=10, subset_size=200)
    assert abs(same["mean"]) < 0.05 * noise["mean"]
    assert noise["mean"] > 0.1


def test_coverage_flags_a_collapsed_generator(digits, digit_classifier):
    images, labels = digits
    full = class_coverage(images, digit_classifier, labels)
    assert full["classes_hit"] == 10 and full["kl"] < 0.01
    sevens = images[labels == 7]
    collapsed = class_coverage(sevens, digit_classifier, labels)
    assert collapsed["classes_hit"] == 1
    assert collapsed["histogram"][7] > 0.95
    assert collapsed["kl"] == pytest.approx(2.3, abs=0.1)  # about log(10)
    two = class_coverage(torch.cat([images[labels == 3], images[labels == 5]]), digit_classifier)
    assert two["classes_hit"] == 2 and two["kl"] == pytest.approx(torch.log(torch.tensor(5.0)).item(), abs=0.1)


def test_metrics_run_inside_the_trainer(digits, digit_classifier, tmp_path):
    images, labels = digits
    cfg = get_config("sagan_32", image_channels=1, step_channels=8, epochs=1, sample_size=4)
    metrics = [
        FID(images[:200], digit_classifier, num_samples=100),
        KID(images[:200], digit_classifier, num_samples=100),
        ClassCoverage(labels, digit_classifier, num_samples=100),
    ]
    trainer = make_trainer(cfg, out=tmp_path, device="cpu", metrics=metrics)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images[:32], labels[:32]), batch_size=16)
    trainer(loader)
    logs = trainer.logger.get_metric_viz().logs
    # Tags that say what each number is, in how many samples (TensorBoard: Metrics/<tag>).
    assert set(logs) == {"FD-100_digit_classifier", "KID-100_digit_classifier", "class_KL-100_digit_classifier"}
    assert len(logs["FD-100_digit_classifier"]) == 1 and logs["FD-100_digit_classifier"][0] > 0
    assert logs["KID-100_digit_classifier"][0] == metrics[1].history[0]["mean"]
    assert logs["class_KL-100_digit_classifier"][0] == metrics[2].history[0]["kl"]
    trainer.logger.close()
    events = list((tmp_path / "logs").glob("events.out.tfevents.*"))
    assert any(b"Metrics/FD-100_digit_classifier" in e.read_bytes() for e in events)
    assert 1 <= metrics[2].history[0]["classes_hit"] <= 10


def test_checkpoints_hold_no_reference_images_and_a_resume_keeps_the_history(digits, digit_classifier, tmp_path,
                                                                               monkeypatch):
    from torchgan_sagan.trainer.checkpoints import load_checkpoint

    images, labels = digits
    cfg = get_config("sagan_32", image_channels=1, step_channels=8, epochs=1, sample_size=4)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images[:16], labels[:16]), batch_size=16)
    seen = []  # images whose features were computed
    features = DigitClassifier.features
    monkeypatch.setattr(DigitClassifier, "features", lambda self, x: (seen.append(len(x)), features(self, x))[1])
    trainer = make_trainer(cfg, out=tmp_path, device="cpu", metrics=[FID(images[:300], digit_classifier,
                                                                         num_samples=50)])
    trainer(loader)
    assert sum(seen) == 300 + 50
    saved = load_checkpoint(tmp_path / "checkpoints" / "gan0.model")["metric_objects"]["FD-50_digit_classifier"]
    assert saved.reference is None and saved.classifier is None and saved.history == trainer.metrics["FD-50_digit_classifier"].history
    assert not any(isinstance(v, (torch.Tensor, torch.nn.Module)) for v in vars(saved).values())
    with pytest.raises(ValueError, match="holds no reference images"):
        saved.score(torch.zeros(2, 1, 32, 32))

    resumed = make_trainer(cfg.replace(epochs=3), out=tmp_path, device="cpu",
                           metrics=[FID(images[:300], digit_classifier, num_samples=50)])
    resumed.load_model(str(tmp_path / "checkpoints" / "gan0.model"))
    seen.clear()
    resumed(loader)
    history = resumed.metrics["FD-50_digit_classifier"].history
    assert len(history) == 3 and history[0] == saved.history[0]
    assert sum(seen) == 300 + 2 * 50  # the real images' features once in the run, then only the samples'


def test_generate_is_seeded_and_restores_the_mode():
    g = SAGANGenerator(8, 16, 1, 8).train()
    a = generate(g, 10, seed=3, batch_size=4)
    b = generate(g, 10, seed=3)
    assert a.shape == (10, 1, 16, 16) and torch.allclose(a, b, atol=1e-6)
    assert g.training


def test_inception_fid_without_weights_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no Inception weights at"):
        inception_fid(torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 8, 8), tmp_path / "missing.pth")


def test_inception_fid_runs_offline_from_a_weights_file(inception_weights):
    weights = inception_weights
    real = torch.rand(6, 1, 32, 32) * 2 - 1
    # the 64-d early pooling layer keeps the matrix square roots small and the test fast
    same = inception_fid(real, real.clone(), weights, feature=64)
    other = inception_fid(real, torch.rand(6, 3, 16, 16) * 2 - 1, weights, feature=64)
    assert same == pytest.approx(0.0, abs=1e-3)
    assert other > same


def test_inception_fid_metric_in_the_trainer(tmp_path, inception_weights, digits):
    from torchgan_sagan.metrics import InceptionFID

    weights = inception_weights
    images, labels = digits
    cfg = get_config("sagan_32", image_channels=1, step_channels=8, epochs=1, sample_size=4)
    metric = InceptionFID(images[:8], weights, feature=64, num_samples=8)
    trainer = make_trainer(cfg, out=tmp_path, device="cpu", metrics=[metric])
    trainer(torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images[:16], labels[:16]), batch_size=8))
    assert trainer.logger.get_metric_viz().logs["FID-8_Inception-v3"] == metric.history
    assert metric.history[0] > 0
    with pytest.raises(FileNotFoundError, match="no Inception weights"):
        InceptionFID(images[:8], tmp_path / "missing.pth")


def test_metric_references_stay_on_the_cpu():
    reference = torch.rand(4, 1, 32, 32).requires_grad_()
    metric = FID(reference * 1, classifier=DigitClassifier(), num_samples=4)
    assert metric.reference.device.type == "cpu" and not metric.reference.requires_grad
