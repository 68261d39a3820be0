import os
import re
import shutil
from pathlib import Path

import pytest
import torch

#: tensorboardX's folder when given no log_dir: ./runs/<Mon><DD>_<HH-MM-SS>_<host>.
_DEFAULT_LOG_DIR = re.compile(r"[A-Z][a-z]{2}\d{2}_\d{2}-\d{2}-\d{2}_")


def _default_log_dirs():
    runs = Path("runs")
    return {p.name for p in runs.iterdir() if _DEFAULT_LOG_DIR.match(p.name)} if runs.is_dir() else set()


def pytest_configure(config):
    """Under pytest-xdist the workers share the cores: each takes its share of threads,
    and so do the subprocesses its tests start (through $OMP_NUM_THREADS), since two
    processes each running a thread per core slow each other several-fold."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        threads = max(1, cores // workers)
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _no_logs_in_the_working_tree():
    """A test whose Trainer or visualizer gets no log_dir leaves TensorBoard files in
    ./runs (tensorboardX's default): remove them and fail that test."""
    before = _default_log_dirs()
    yield
    new = sorted(_default_log_dirs() - before)
    for name in new:
        shutil.rmtree(Path("runs") / name, ignore_errors=True)
    if new:
        pytest.fail(f"the test wrote TensorBoard logs to ./runs/{new[0]} (tensorboardX's default folder): "
                    "give its Trainer or visualizer a log_dir under tmp_path")


@pytest.fixture
def poison_discriminator(monkeypatch):
    """``poison(at_call)``: the discriminator's output becomes NaN at its ``at_call``-th
    forward in training mode (D runs three times an iteration: real, fake, G's step)."""
    from torchgan_sagan.models.discriminator import SAGANDiscriminator

    forward = SAGANDiscriminator.forward

    def poison(at_call):
        calls = [0]

        def poisoned(self, *args, **kwargs):
            out = forward(self, *args, **kwargs)
            if self.training:
                calls[0] += 1
                if calls[0] == at_call:
                    out = out * float("nan")
            return out

        monkeypatch.setattr(SAGANDiscriminator, "forward", poisoned)

    return poison


@pytest.fixture
def tiny_images():
    """Eight random 3x16x16 images in [-1, 1] with dummy labels, as a torchgan dataset."""
    images = torch.rand(8, 3, 16, 16) * 2 - 1
    return torch.utils.data.TensorDataset(images, torch.zeros(8, dtype=torch.long))


@pytest.fixture(scope="session", autouse=True)
def package_cache(request, tmp_path_factory):
    """The package's cache folder for the whole session (the digit classifier, decoded
    images), never the user's: pytest's own cache (.pytest_cache, kept between runs, so
    the edit-test loop trains the classifier once), or a fresh folder without it. Set as
    $TORCHGAN_SAGAN_CACHE, so that subprocesses use it too."""
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    folder = cache.mkdir("torchgan_sagan") if cache is not None else tmp_path_factory.mktemp("cache")
    before = os.environ.get("TORCHGAN_SAGAN_CACHE")
    os.environ["TORCHGAN_SAGAN_CACHE"] = str(folder)
    yield folder
    if before is None:
        del os.environ["TORCHGAN_SAGAN_CACHE"]
    else:
        os.environ["TORCHGAN_SAGAN_CACHE"] = before


@pytest.fixture(scope="session")
def classifier_cache(package_cache):
    """Where the digit classifier is cached (a stale one is retrained: its file names
    its version)."""
    return package_cache


@pytest.fixture(scope="session")
def digit_classifier(classifier_cache):
    from torchgan_sagan.metrics import digit_classifier as load

    return load(cache_dir=classifier_cache)


def _one_iteration(cfg, tmp_path, batch=2, *, trainer=None, labels=None):
    from torchgan_sagan import make_trainer, train_step

    trainer = trainer or make_trainer(cfg, out=tmp_path, device="cpu")
    size, channels = cfg.image_size, cfg.image_channels
    images = torch.rand(batch, channels, size, size) * 2 - 1
    if cfg.num_classes and labels is None:
        labels = torch.randint(0, cfg.num_classes, (batch,))
    before = [p.detach().clone() for p in trainer.generator.parameters()]
    lgen, ldis = train_step(trainer, images, labels)
    assert trainer.loss_information["discriminator_iters"] >= 1
    assert torch.isfinite(torch.tensor([lgen, ldis])).all()
    return trainer, before


@pytest.fixture
def one_iteration():
    """``one_iteration(cfg, tmp_path)``: one training iteration of ``cfg`` on random
    images (random labels when conditional), through ``make_trainer`` and
    ``train_step``; returns the trainer and G's parameters from before the step."""
    return _one_iteration


def _tiny_run(folder, name, **overrides):
    """A run folder as make_trainer leaves it, after two training iterations and one
    checkpoint."""
    from torchgan_sagan import get_config, make_trainer, train_step

    cfg = get_config(name, step_channels=8, sample_size=4, **overrides)
    trainer = make_trainer(cfg, out=folder, device="cpu")
    images = torch.rand(4, cfg.image_channels, cfg.image_size, cfg.image_size) * 2 - 1
    labels = torch.tensor([0, 1, 2, 3]) if cfg.num_classes else None
    for _ in range(2):
        train_step(trainer, images, labels)
    trainer.save_model(0)
    return folder


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A trained unconditional 32x32 grayscale run (sagan_faces_32 at width 8)."""
    return _tiny_run(tmp_path_factory.mktemp("run"), "sagan_faces_32")


@pytest.fixture(scope="session")
def tiny_conditional_run(tmp_path_factory):
    """A trained class-conditional 32x32 run with a moving-average generator."""
    return _tiny_run(tmp_path_factory.mktemp("cond_run"), "sagan_cond_digits_32", ema_decay=0.5)


@pytest.fixture(autouse=True)
def _no_downloads(monkeypatch):
    """No test reaches the internet through torch.hub: a download from anywhere but a
    file:// address fails as it does without a connection (tests that fetch point the
    Inception address at the stand-in file)."""
    import urllib.error

    fetch = torch.hub.download_url_to_file

    def offline(url, *args, **kwargs):
        if not str(url).startswith("file:"):
            raise urllib.error.URLError(f"no network in the tests ({url})")
        return fetch(url, *args, **kwargs)

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)


@pytest.fixture(scope="session")
def inception_weights(tmp_path_factory):
    """A weights file with torch-fidelity's Inception structure and random values
    (the real one cannot be fetched here; see tests/standin_inception.py)."""
    pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")
    from standin_inception import write_standin_weights

    return write_standin_weights(tmp_path_factory.mktemp("inception") / "inception.pth")


@pytest.fixture(scope="session")
def tiny_resnet_run(tmp_path_factory):
    """A trained run of the paper's residual nets (class-conditional, with an average)."""
    return _tiny_run(tmp_path_factory.mktemp("resnet_run"), "sagan_resnet_cifar_32", image_channels=1,
                     ema_decay=0.5, ncritic=1)


def _load_script(path, name=None):
    """A script (examples/, benchmarks/, docs/) as a module, without running its main.
    What importing it sets in the environment or on sys.path stays inside."""
    import importlib.util
    import sys
    from unittest import mock

    spec = importlib.util.spec_from_file_location(name or Path(path).stem, path)
    module = importlib.util.module_from_spec(spec)
    with mock.patch.dict(os.environ), mock.patch.object(sys, "path", list(sys.path)):
        spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def load_script():
    """``load_script(path)``: the script at ``path`` as a module (see ``_load_script``)."""
    return _load_script


@pytest.fixture
def watch_outputs():
    """``watch(module)`` -> a record of the module's outputs: ``record["calls"]``, and
    ``record["most"]``, the most of them alive at once (held by anyone)."""
    import weakref

    def watch(module):
        alive, record = [], {"calls": 0, "most": 0}

        def hook(_module, _inputs, output):
            alive.append(weakref.ref(output))
            record["calls"] = len(alive)
            record["most"] = max(record["most"], sum(ref() is not None for ref in alive))

        module.register_forward_hook(hook)
        return record

    return watch
