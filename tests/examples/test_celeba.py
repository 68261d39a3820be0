"""examples/celeba.py end to end (subprocess) and its handling of bad input (in process)."""

import dataclasses
import errno
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from torchgan_sagan import SAGANConfig
from torchgan_sagan.recipe.cli import config_overrides
from torchgan_sagan.trainer.checkpoints import latest_intact_checkpoint, load_checkpoint
from torchgan_sagan.trainer.divergence import MARK_FILE, non_finite_entries

#: End-to-end runs of an example script: the slow tier.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "celeba.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("celeba_example", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


celeba = _load_example()


def _run(*args, cwd):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)],
        cwd=cwd, capture_output=True, text=True, timeout=600,
    )


@pytest.fixture
def celeba_folder(tmp_path):
    """A CelebA-like tree: <root>/img_align_celeba/NNNNNN.jpg, 178x218 JPEGs."""
    folder = tmp_path / "celeba" / "img_align_celeba"
    folder.mkdir(parents=True)
    gen = torch.Generator().manual_seed(0)
    for i in range(10):
        pixels = (torch.rand(218, 178, 3, generator=gen) * 255).to(torch.uint8).numpy()
        Image.fromarray(pixels).save(folder / f"{i + 1:06d}.jpg")
    return folder.parent


def _assert_outputs(out: Path, epochs: int, checkpoints=None):
    for epoch in range(1, epochs + 1):
        assert (out / "samples" / f"epoch{epoch}_generator.png").stat().st_size > 0
    assert (out / "samples" / "final.png").is_file()
    assert (out / "real_vs_fake.png").is_file() and (out / "attention.png").is_file()
    assert (out / "nearest.png").is_file()
    assert len(list((out / "checkpoints").glob("gan*.model"))) == (checkpoints or epochs)
    assert list((out / "logs").glob("events.out.tfevents.*"))


def test_trains_on_a_celeba_folder(celeba_folder, tmp_path):
    out = tmp_path / "run"
    # The PIL path (decoding every epoch); the cached path is the next test's.
    result = _run("--data-root", celeba_folder, "--epochs", 1, "--batch-size", 4, "--no-image-cache",
                  "--step-channels", 8, "--max-images", 8, "--out", out, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Training on 8 images" in result.stdout and "decoded" not in result.stdout
    _assert_outputs(out, epochs=1)
    checkpoint = torch.load(out / "checkpoints" / "gan0.model", weights_only=False)
    assert checkpoint["epoch"] == 1 and checkpoint["loss_information"]["generator_iters"] == 2


def test_a_folder_is_decoded_once_and_the_cache_reused(celeba_folder, tmp_path, capsys):
    common = [str(a) for a in ("--data-root", celeba_folder, "--epochs", 1, "--batch-size", 4, "--step-channels",
                               8, "--cache-dir", tmp_path / "cache")]
    assert celeba.main([*common, "--out", str(tmp_path / "a")]) == 0
    printed = capsys.readouterr().out
    assert "Training on 10 images" in printed and "decoded once in" in printed
    cached = list((tmp_path / "cache").glob("images-*.npy"))
    assert len(cached) == 1
    assert celeba.main([*common, "--out", str(tmp_path / "b")]) == 0
    assert "decoded before" in capsys.readouterr().out and list((tmp_path / "cache").glob("images-*.npy")) == cached


def test_bad_input_exits_with_one_line_and_no_traceback(tmp_path):
    result = _run("--data-root", tmp_path / "missing", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        f"celeba.py: error: data folder {str(tmp_path / 'missing')!r} does not exist"
    ]


def _main_error(capsys, *args):
    assert celeba.main([str(a) for a in args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("celeba.py: error: ")
    return err[0]


def test_empty_folder(tmp_path, capsys):
    assert "no images" in _main_error(capsys, "--data-root", tmp_path, "--out", tmp_path / "o")


def test_folder_without_images(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "readme.txt").write_text("hello")
    assert "no images" in _main_error(capsys, "--data-root", tmp_path / "data", "--out", tmp_path / "o")


def test_only_corrupt_images(tmp_path, capsys):
    (tmp_path / "data").mkdir()
    for i in range(3):
        (tmp_path / "data" / f"{i}.jpg").write_bytes(b"garbage")
    message = _main_error(capsys, "--data-root", tmp_path / "data", "--out", tmp_path / "o")
    assert "none of the 3 image files could be read" in message


def test_corrupt_images_are_skipped_and_counted(celeba_folder, tmp_path, capsys):
    (celeba_folder / "img_align_celeba" / "000000.jpg").write_bytes(b"garbage")
    code = celeba.main([
        "--data-root", str(celeba_folder), "--epochs", "1", "--batch-size", "4",
        "--step-channels", "8", "--max-images", "9", "--out", str(tmp_path / "o"), "--num-workers", "0",
    ])
    assert code == 0
    out = capsys.readouterr().out
    assert "Training on 8 images" in out
    assert f"Skipped 1 file(s): {celeba_folder / 'img_align_celeba' / '000000.jpg'} (cannot be decoded " \
           f"(UnidentifiedImageError))." in out


def test_batch_larger_than_the_dataset(tmp_path, capsys):
    message = _main_error(capsys, "--max-images", 5, "--batch-size", 64, "--out", tmp_path / "o")
    assert message.endswith("batch size 64 is larger than the dataset (10 images); pass a smaller --batch-size")


def test_resume_without_checkpoint(tmp_path, capsys):
    message = _main_error(capsys, "--resume", "--out", tmp_path / "empty")
    assert "no checkpoint" in message


@pytest.mark.parametrize("flag, value", [("--config", "sagan_999"), ("--loss", "l1")])
def test_unknown_config_or_loss(flag, value, capsys):
    with pytest.raises(SystemExit) as exit_info:
        celeba.main([flag, value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"invalid choice: '{value}'" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and err.startswith("celeba.py: error: ")  # not ~50 flags of usage
    assert err.strip().endswith("(celeba.py --help lists the flags)")


@pytest.mark.parametrize("args, message", [
    (["--epochs", "0"], "epochs must be a positive integer, got 0"),
    (["--device", "cuda:7"] if not torch.cuda.is_available() else ["--device", "nonsense"], "--device"),
])
def test_bad_numbers_and_devices(args, message, tmp_path, capsys):
    assert message in _main_error(capsys, *args, "--out", tmp_path / "o")


def test_moving_average_and_diffaugment_switches(tmp_path, capsys):
    out = tmp_path / "ema"
    args = ["--epochs", "1", "--max-images", "10", "--step-channels", "8", "--out", str(out),
            "--ema", "0.9", "--ema-start", "2", "--diffaugment"]
    assert celeba.main(args) == 0
    assert "EMA decay 0.9, DiffAugment color,translation,cutout" in capsys.readouterr().out
    state = torch.load(out / "checkpoints" / "gan0.model", weights_only=False)["generator"]
    assert int(state["ema.steps"]) == 1  # 20 images, batch 20: one G step
    assert celeba.main([*args[:1], "2", *args[2:], "--resume"]) == 0
    state = torch.load(out / "checkpoints" / "gan1.model", weights_only=False)["generator"]
    assert int(state["ema.steps"]) == 2


@pytest.mark.parametrize("args, message", [
    (["--ema", "1.5"], "decay must be a number in [0, 1)"),
    (["--diffaugment", "flip"], "unknown DiffAugment transformation(s) ['flip']"),
    (["--labels", "labels.csv"], "--labels names the classes of --data-root's images; give --data-root too"),
])
def test_bad_switches(args, message, tmp_path, capsys):
    assert message in _main_error(capsys, *args, "--out", tmp_path / "o")


def test_every_config_field_is_reachable_or_explicitly_excluded():
    parser_dests = {a.dest for a in celeba.build_parser()._actions}
    for f in dataclasses.fields(SAGANConfig):
        assert (f.name in parser_dests) != (f.name in celeba.EXCLUDED_FIELDS), f.name
    assert set(celeba.EXCLUDED_FIELDS) <= {f.name for f in dataclasses.fields(SAGANConfig)}


def test_config_flags_reach_the_config():
    args = celeba.parse_args(["--g-lr", "3e-4", "--attn-fused", "off", "--ema", "0.9", "--g-attn-resolutions", "8"])
    assert config_overrides(args) == {"g_lr": 3e-4, "attn_fused": "off", "ema_decay": 0.9,
                                      "g_attn_resolutions": [8]}


def _small_run(out, epochs):
    return celeba.main(["--epochs", str(epochs), "--max-images", "10", "--step-channels", "8", "--out", str(out)])


def test_resume_skips_a_damaged_newest_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    assert _small_run(out, 2) == 0
    newest = out / "checkpoints" / "gan1.model"
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated, as by a full disk
    assert celeba.main(["--epochs", "3", "--max-images", "10", "--step-channels", "8", "--out", str(out),
                        "--resume"]) == 0
    printed = capsys.readouterr().out
    assert f"Skipping {newest}" in printed and "truncated or corrupt" in printed
    assert "Resuming from the newest intact checkpoint" in printed and "Resuming at epoch 2 of 3" in printed


class _WritesAFile:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_resume_refuses_a_checkpoint_that_runs_code(tmp_path, capsys):
    out = tmp_path / "run"
    assert _small_run(out, 1) == 0
    capsys.readouterr()
    target = tmp_path / "written_by_the_checkpoint.txt"
    torch.save({"epoch": 1, "payload": _WritesAFile(target)}, out / "checkpoints" / "gan4.model")
    message = _main_error(capsys, "--epochs", "2", "--max-images", "10", "--step-channels", "8",
                          "--out", out, "--resume")
    assert "holds" in message and "--trust-checkpoint" in message
    assert not target.exists()


def test_the_run_records_its_config_and_logs_torchgans_summaries(tmp_path, capsys):
    out = tmp_path / "run"
    assert _small_run(out, 1) == 0
    assert "Epoch 1 Summary" not in capsys.readouterr().out
    assert "Epoch 1 Summary" in (out / "train.log").read_text()
    from torchgan_sagan.trainer.run_folder import read_config

    assert read_config(out).step_channels == 8


TINY = ["--epochs", "1", "--max-images", "4", "--batch-size", "4", "--step-channels", "8"]


def test_inception_fid_every_epoch_reaches_tensorboard_under_a_tag_that_says_what_it_is(
        tmp_path, inception_weights, monkeypatch, capsys):
    out = tmp_path / "run"
    assert celeba.main([*TINY, "--out", str(out), "--inception-weights", str(inception_weights)]) == 0
    events = b"".join(p.read_bytes() for p in (out / "logs").glob("events.out.tfevents.*"))
    assert b"Metrics/FID-8_Inception-v3" in events and b"attention_maps" in events  # 4 faces, mirrored
    assert "FID-8_Inception-v3" in (out / "train.log").read_text()
    assert "After every epoch: FID-8_Inception-v3 against 8 training images" in capsys.readouterr().out
    # Without FILE: the package's cached copy; none cached and none fetchable is one line.
    monkeypatch.setenv("TORCHGAN_SAGAN_CACHE", str(tmp_path / "cache"))
    assert celeba.main([*TINY, "--out", str(tmp_path / "other"), "--inception-weights"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--inception-weights: no Inception weights at " in err
    (tmp_path / "cache" / "inception").mkdir(parents=True, exist_ok=True)
    shutil.copy(inception_weights, tmp_path / "cache" / "inception" / "weights-inception-2015-12-05-6726825d.pth")
    assert celeba.main([*TINY, "--out", str(tmp_path / "third"), "--inception-weights"]) == 0



def test_no_run_overwrites_another(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert celeba.main(TINY) == 0
    printed = capsys.readouterr().out
    assert "A new run: runs/sagan_faces_32\n" in printed and "A new run: runs/sagan_faces_32-2\n" in printed
    first = (tmp_path / "runs" / "sagan_faces_32" / "checkpoints" / "gan0.model").stat().st_mtime_ns
    # --resume without --out continues the newest run of the config.
    assert celeba.main([*TINY, "--epochs", "2", "--resume"]) == 0
    assert "Resuming at epoch 2 of 2." in capsys.readouterr().out
    assert (tmp_path / "runs" / "sagan_faces_32-2" / "checkpoints" / "gan1.model").is_file()
    assert (tmp_path / "runs" / "sagan_faces_32" / "checkpoints" / "gan0.model").stat().st_mtime_ns == first
    assert not (tmp_path / "runs" / "sagan_faces_32" / "checkpoints" / "gan1.model").exists()


def test_a_new_run_into_an_out_with_checkpoints_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert celeba.main([*TINY, "--out", str(out)]) == 0
    before = (out / "checkpoints" / "gan0.model").read_bytes()
    capsys.readouterr()
    message = _main_error(capsys, *TINY, "--out", out)
    assert "holds the checkpoints of an earlier run" in message and "--resume auto" in message
    assert (out / "checkpoints" / "gan0.model").read_bytes() == before


def test_resume_auto_starts_fresh_then_continues(tmp_path, capsys):
    out = tmp_path / "run"
    assert celeba.main([*TINY, "--out", str(out), "--resume", "auto"]) == 0
    assert "no checkpoint in" in capsys.readouterr().out
    assert celeba.main([*TINY, "--epochs", "2", "--out", str(out), "--resume", "auto"]) == 0
    assert "Resuming at epoch 2 of 2." in capsys.readouterr().out
    assert sorted(p.name for p in (out / "checkpoints").glob("*.model")) == ["gan0.model", "gan1.model"]


def test_a_full_disk_keeps_the_checkpoints_and_says_so_in_one_line(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    assert celeba.main([*TINY, "--out", str(out)]) == 0
    before = (out / "checkpoints" / "gan0.model").read_bytes()
    capsys.readouterr()

    def save_until_the_disk_is_full(obj, f, *args, **kwargs):
        f.write(b"the first half of a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", save_until_the_disk_is_full)
    assert celeba.main([*TINY, "--epochs", "2", "--out", str(out), "--resume"]) == 1
    # What a terminal shows: each line's text after its last carriage return (the progress
    # bar, erased on the error, rewrites its line in place).
    err = [line.split("\r")[-1].strip() for line in capsys.readouterr().err.split("\n")]
    err = [line for line in err if line]
    assert len(err) == 1 and "the disk is full" in err[0] and "--resume" in err[0]
    assert (out / "checkpoints" / "gan0.model").read_bytes() == before
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["gan0.model"]  # no partial file


def _newest(out):
    return latest_intact_checkpoint(out / "checkpoints")[1]


def test_a_diverging_run_exits_3_and_a_restart_does_not_replay_it(tmp_path, capsys, poison_discriminator):
    out = tmp_path / "run"
    poison_discriminator(at_call=3 * 3)  # iteration 3: the first batch of epoch 2
    args = [*TINY, "--epochs", "3", "--out", str(out), "--resume", "auto"]
    assert celeba.main(args) == 3
    err = [line.split("\r")[-1].strip() for line in capsys.readouterr().err.split("\n")]
    err = [line for line in err if line]
    assert len(err) == 1 and "training diverged at iteration 4 (epoch 2)" in err[0]
    assert f"the newest good checkpoint is {out / 'checkpoints' / 'gan0.model'}" in err[0]
    assert [p.name for p in (out / "checkpoints").glob("*.model")] == ["gan0.model"]
    assert not non_finite_entries(load_checkpoint(out / "checkpoints" / "gan0.model"))
    written = (out / "checkpoints" / "gan0.model").stat().st_mtime_ns

    # What torchrun --max-restarts does: the same command again. It stops at once.
    assert celeba.main(args) == 3
    assert capsys.readouterr().err.strip() == err[0]
    assert (out / "checkpoints" / "gan0.model").stat().st_mtime_ns == written

    # With lower learning rates it continues, and config.json says so.
    assert celeba.main([*args, "--g-lr", "5e-5", "--d-lr", "2e-4"]) == 0
    assert not (out / MARK_FILE).exists()
    newest = _newest(out)
    assert newest["epoch"] == 3 and newest["optimizer_generator"]["param_groups"][0]["lr"] == 5e-5
    config = json.loads((out / "config.json").read_text())
    assert config["fields"]["g_lr"] == 5e-5
    assert config["history"][-1]["why"] == "resumed with --d-lr --g-lr"
    assert config["history"][-1]["changes"]["d_lr"] == [4e-4, 2e-4]


def test_resume_refuses_flags_that_change_what_trains(tmp_path, capsys):
    out = tmp_path / "run"
    assert celeba.main([*TINY, "--out", str(out)]) == 0
    recorded = (out / "config.json").read_text()
    capsys.readouterr()
    message = _main_error(capsys, *TINY, "--epochs", 2, "--out", out, "--resume", "--loss", "hinge",
                          "--step-channels", 16)
    assert "loss 'least_squares' -> 'hinge'" in message and "step_channels 8 -> 16" in message
    assert "epochs" not in message  # the length of a run may change
    message = _main_error(capsys, *TINY, "--epochs", 2, "--out", out, "--resume", "--seed", 5)
    assert "the run trained with --seed 0" in message
    assert (out / "config.json").read_text() == recorded
    assert [p.name for p in (out / "checkpoints").glob("*.model")] == ["gan0.model"]


def test_a_run_killed_by_sigkill_resumes_to_the_weights_of_the_run_left_alone(tmp_path, capsys):
    # 12 faces and their mirrors, batches of 4: 6 iterations an epoch, a checkpoint every 2.
    flags = ["--epochs", "2", "--max-images", "12", "--batch-size", "4", "--step-channels", "8",
             "--checkpoint-every", "2"]
    assert celeba.main([*flags, "--out", str(tmp_path / "alone")]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("No --data-root given: training on the embedded faces")
    assert "Memorization check (24 training images)" in printed and "ratio" in printed
    killed = subprocess.run([sys.executable, str(ROOT / "tests" / "trainer" / "killed_worker.py"), *flags,
                             "--out", str(tmp_path / "cut")], cwd=tmp_path, capture_output=True, text=True,
                            timeout=600, env={**os.environ, "KILL_RANK": "0", "KILL_AFTER_SAVES": "1"})
    assert killed.returncode == -9
    state = _newest(tmp_path / "cut")["train_state"]
    assert (state["epoch"], state["batch"], state["iteration"]) == (0, 2, 2)  # in the middle of epoch 1
    resumed = _run(*flags, "--out", tmp_path / "cut", "--resume", "auto", cwd=tmp_path)
    assert resumed.returncode == 0 and "Resuming at epoch 1 of 2, batch 3." in resumed.stdout
    _assert_outputs(tmp_path / "cut", epochs=2, checkpoints=5)
    alone, cut = _newest(tmp_path / "alone"), _newest(tmp_path / "cut")
    assert cut["train_state"]["iteration"] == alone["train_state"]["iteration"] == 12
    assert cut["run_seed"] == 0  # the resume kept the run's seed, and so its data order
    for part in ("generator", "discriminator"):
        assert all(torch.equal(alone[part][key], cut[part][key]) for key in alone[part]), part
    moments = [(alone[o]["state"][k]["exp_avg_sq"], cut[o]["state"][k]["exp_avg_sq"])
               for o in ("optimizer_generator", "optimizer_discriminator") for k in alone[o]["state"]]
    assert all(torch.equal(a, b) for a, b in moments)


def test_sigterm_mid_epoch_writes_a_checkpoint_and_resume_auto_ends_with_the_weights_of_the_run_left_alone(
        tmp_path, capsys):
    """SLURM's time limit or scancel: SIGTERM at iteration 3 of 6 in epoch 1, with no
    --checkpoint-every: the run finishes the iteration, writes a checkpoint there and
    exits 75; torchrun or a requeue runs the same command with --resume auto."""
    flags = ["--epochs", "2", "--max-images", "12", "--batch-size", "4", "--step-channels", "8"]
    assert celeba.main([*flags, "--out", str(tmp_path / "alone")]) == 0
    capsys.readouterr()
    stopped = subprocess.run([sys.executable, str(ROOT / "tests" / "trainer" / "killed_worker.py"), *flags,
                              "--out", str(tmp_path / "cut")], cwd=tmp_path, capture_output=True, text=True,
                             timeout=600, env={**os.environ, "KILL_RANK": "0", "SIGNAL": "TERM",
                                               "SIGNAL_AT_ITERATION": "3"})
    assert stopped.returncode == 75, stopped.stderr[-2000:]
    assert stopped.stderr.strip().splitlines()[-1].startswith("celeba.py: stopped by SIGTERM at iteration 3, after "
                                                              "writing ")
    state = _newest(tmp_path / "cut")["train_state"]
    assert (state["epoch"], state["batch"], state["iteration"]) == (0, 3, 3)
    assert not (tmp_path / "cut" / "samples" / "final.png").exists()  # it stopped, it did not finish
    resumed = _run(*flags, "--out", tmp_path / "cut", "--resume", "auto", cwd=tmp_path)
    assert resumed.returncode == 0 and "Resuming at epoch 1 of 2, batch 4." in resumed.stdout
    alone, cut = _newest(tmp_path / "alone"), _newest(tmp_path / "cut")
    assert cut["train_state"]["iteration"] == alone["train_state"]["iteration"] == 12
    for part in ("generator", "discriminator", "optimizer_generator", "optimizer_discriminator"):
        flat_alone, flat_cut = _tensors(alone[part]), _tensors(cut[part])
        assert len(flat_alone) == len(flat_cut) and all(torch.equal(a, b) for a, b in zip(flat_alone, flat_cut)), part


def _tensors(tree):
    if isinstance(tree, torch.Tensor):
        return [tree]
    if isinstance(tree, dict):
        return [t for key in sorted(tree, key=str) for t in _tensors(tree[key])]
    if isinstance(tree, (list, tuple)):
        return [t for item in tree for t in _tensors(item)]
    return []


@pytest.mark.parametrize("signal_name, status", [("SIGUSR1", 75), ("SIGINT", 130)])
def test_sigusr1_and_ctrl_c_stop_with_a_checkpoint(signal_name, status, tmp_path, monkeypatch, capsys):
    import signal

    from torchgan_sagan.trainer import resumable

    iterate, seen = resumable.run_iteration, [0]

    def signalled(trainer):
        result = iterate(trainer)
        seen[0] += 1
        if seen[0] == 2:
            os.kill(os.getpid(), getattr(signal, signal_name))
        return result

    monkeypatch.setattr(resumable, "run_iteration", signalled)
    out = tmp_path / "run"
    assert celeba.main(["--epochs", "2", "--max-images", "12", "--batch-size", "4", "--step-channels", "8",
                        "--out", str(out)]) == status
    assert f"stopped by {signal_name} at iteration 2" in capsys.readouterr().err
    assert _newest(out)["train_state"]["iteration"] == 2
    assert signal.getsignal(getattr(signal, signal_name)) is not None  # the handlers were put back
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_second_ctrl_c_stops_at_once_and_says_what_is_kept(tmp_path, monkeypatch, capsys):
    import signal

    from torchgan_sagan.trainer import resumable

    def pressed_twice(trainer):
        os.kill(os.getpid(), signal.SIGINT)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(resumable, "run_iteration", pressed_twice)
    out = tmp_path / "run"
    assert celeba.main(["--epochs", "1", "--max-images", "12", "--batch-size", "4", "--step-channels", "8",
                        "--out", str(out)]) == 130
    assert capsys.readouterr().err.strip().endswith("interrupted; no checkpoint had been written")


def test_a_second_job_into_a_live_runs_folder_is_refused_and_continues_once_it_is_gone(tmp_path, capsys):
    """The same --out --resume auto job submitted twice: the second exits 2 naming the
    first; the first trains on, alone; after it stops, the folder is free again."""
    from torchgan_sagan.trainer.run_lock import LOCK_FILE

    out = tmp_path / "run"
    flags = ["--max-images", "12", "--batch-size", "4", "--step-channels", "8", "--out", str(out), "--resume", "auto"]
    first = subprocess.Popen([sys.executable, str(SCRIPT), *flags, "--epochs", "500"], cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):  # until it trains: the lock and a first checkpoint are there
            if (out / LOCK_FILE).exists() and list((out / "checkpoints").glob("*.model")):
                break
            time.sleep(0.1)
        assert celeba.main([*flags, "--epochs", "500"]) == 2
        error = capsys.readouterr().err
        assert error.startswith(f"celeba.py: error: {out} is in use by pid {first.pid} on ") and "\n" == error[-1:]
        assert len(error.strip().splitlines()) == 1
    finally:
        first.send_signal(signal.SIGTERM)
        stdout, stderr = first.communicate(timeout=120)
    assert first.returncode == 75, stderr[-2000:]
    assert not (out / LOCK_FILE).exists()
    assert celeba.main([*flags, "--epochs", "1"]) == 0  # the folder is free again: it resumes
    assert "in use" not in capsys.readouterr().err


def test_new_runs_started_together_take_different_folders(tmp_path, monkeypatch):
    """A job array's tasks, started in the same second without --out."""
    monkeypatch.chdir(tmp_path)
    args = celeba.parse_args([])
    first, second = celeba.choose_out(args, "sagan_faces_32"), celeba.choose_out(args, "sagan_faces_32")
    assert (first, second) == (Path("runs/sagan_faces_32"), Path("runs/sagan_faces_32-2"))


def test_a_piped_run_prints_a_line_per_epoch_and_no_carriage_returns(tmp_path):
    """As under a batch system, whose log file is no terminal: no progress bar."""
    result = _run("--epochs", 3, "--max-images", 12, "--batch-size", 4, "--step-channels", 8, "--out",
                  tmp_path / "run", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "\r" not in result.stdout + result.stderr
    epochs = [line for line in result.stdout.splitlines() if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epochs] == ["epoch 1/3 done", "epoch 2/3 done", "epoch 3/3 done"]
    assert all(", G " in line and ", D " in line and line.endswith(" it/s") for line in epochs)
    log = (tmp_path / "run" / "train.log").read_text()
    assert log.count("Epoch 3 Summary") == 1  # torchgan's summaries, whole, in the log


def test_an_unreadable_newest_checkpoint_stops_the_resume_with_its_reason(tmp_path, monkeypatch, capsys):
    import errno

    from torchgan_sagan.trainer import checkpoints

    out = tmp_path / "run"
    assert _small_run(out, 2) == 0
    capsys.readouterr()
    newest = checkpoints.latest_intact_checkpoint(out / "checkpoints")[0]
    load = torch.load

    def refusing(path, *args, **kwargs):  # as EACCES on a teammate's file, ESTALE on NFS (root reads anything)
        if Path(path) == newest:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return load(path, *args, **kwargs)

    monkeypatch.setattr(checkpoints.torch, "load", refusing)
    before = sorted((p.name, p.stat().st_mtime_ns) for p in (out / "checkpoints").iterdir())
    message = _main_error(capsys, "--epochs", "3", "--max-images", "10", "--step-channels", "8", "--out", out,
                          "--resume")
    assert message == (f"celeba.py: error: --resume: '{newest}' cannot be read (Permission denied); it is not known "
                       f"to be damaged: fix the access and try again")
    assert sorted((p.name, p.stat().st_mtime_ns) for p in (out / "checkpoints").iterdir()) == before


def test_a_restart_with_the_original_rates_keeps_what_a_rollback_decided(tmp_path, capsys, poison_discriminator):
    """torchrun --max-restarts and a requeue repeat the command line the run began with:
    its --g-lr and --d-lr must not undo the rates a rollback halved, nor pass the
    DIVERGED mark that a later divergence leaves."""
    out = tmp_path / "run"
    command = [*TINY, "--out", str(out), "--resume", "auto", "--g-lr", "1e-4", "--d-lr", "4e-4",
               "--on-divergence", "rollback", "--max-rollbacks", "1"]
    poison_discriminator(at_call=3 * 3)  # iteration 3, in epoch 2: rolled back to epoch 1's checkpoint
    assert celeba.main([*command, "--epochs", "3"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert (config["fields"]["g_lr"], config["fields"]["d_lr"]) == (5e-5, 2e-4)
    capsys.readouterr()

    assert celeba.main([*command, "--epochs", "4"]) == 0  # the restart, with the original flags
    printed = capsys.readouterr().out
    assert "--g-lr 0.0001 is what this run trained with before it changed g_lr itself (a rollback); it keeps " \
           "5e-05" in printed
    newest = _newest(out)
    assert newest["epoch"] == 4
    assert [newest[f"optimizer_{net}"]["param_groups"][0]["lr"] for net in ("generator", "discriminator")] == \
        [5e-5, 2e-4]
    assert json.loads((out / "config.json").read_text())["fields"]["g_lr"] == 5e-5

    # It diverges again, its one rollback spent: it stops and marks the folder. The
    # same command again does not pass the mark: its rates are no change.
    poison_discriminator(at_call=3)
    assert celeba.main([*command, "--epochs", "6"]) == 3
    assert (out / MARK_FILE).exists()
    capsys.readouterr()
    assert celeba.main([*command, "--epochs", "6"]) == 3
    assert "training diverged" in capsys.readouterr().err

    # A new value is the user's change: it passes the mark, and trains.
    assert celeba.main([*command, "--g-lr", "3e-5", "--epochs", "6"]) == 0
    assert _newest(out)["optimizer_generator"]["param_groups"][0]["lr"] == 3e-5 and not (out / MARK_FILE).exists()


def test_a_resume_on_other_data_is_refused_with_each_difference(celeba_folder, tmp_path, capsys):
    """--out R --resume without --data-root would train a folder's run on the embedded
    faces; a copy of the folder elsewhere (a job's scratch disk) is the same data."""
    out = tmp_path / "run"
    common = ["--batch-size", "4", "--step-channels", "8", "--cache-dir", str(tmp_path / "cache"), "--out", str(out)]
    assert celeba.main([*common, "--data-root", str(celeba_folder), "--epochs", "1"]) == 0
    capsys.readouterr()
    message = _main_error(capsys, *common, "--epochs", "2", "--resume")
    assert message.startswith("celeba.py: error: --resume: the run trained on other data: source 'folder' -> "
                              "'embedded LFW faces'; crop 160 -> None; images 10 -> 200")
    assert "--allow-data-change" in message
    message = _main_error(capsys, *common, "--data-root", str(celeba_folder), "--max-images", "8", "--epochs", "2",
                          "--resume")
    assert "images 10 -> 8" in message and "source" not in message

    staged = tmp_path / "scratch" / "celeba"
    shutil.copytree(celeba_folder, staged)
    assert celeba.main([*common, "--data-root", str(staged), "--epochs", "2", "--resume"]) == 0
    assert f"The data moved: {celeba_folder.resolve()} -> {staged.resolve()} (the same 10 images)." in \
        capsys.readouterr().out
    assert celeba.main([*common, "--epochs", "3", "--resume", "--allow-data-change"]) == 0
    assert "Resuming on other data, as asked (--allow-data-change): source 'folder'" in capsys.readouterr().out


def test_a_checkpoint_after_40_epochs_is_the_size_of_one_after_4(tmp_path, capsys):
    """torchgan appended every iteration's losses and gradient sums to logs that every
    checkpoint holds (and memory too): 480 iterations (batches of 2) made this one 0.7%
    larger, and a run of 10^7 iterations would carry hundreds of MB."""
    out = tmp_path / "run"
    flags = ["--max-images", "12", "--batch-size", "4", "--step-channels", "8", "--out", str(out)]
    assert celeba.main([*flags, "--epochs", "4"]) == 0
    after_4 = _newest(out)
    size_4 = (out / "checkpoints" / "gan3.model").stat().st_size
    assert celeba.main([*flags, "--epochs", "40", "--resume"]) == 0
    after_40 = _newest(out)
    assert after_40["epoch"] == 40 and after_40["train_state"]["iteration"] == 240
    size_40 = max(p.stat().st_size for p in (out / "checkpoints").glob("*.model"))
    assert abs(size_40 - size_4) <= 0.001 * size_4, (size_4, size_40)  # the bar is 1%
    for checkpoint in (after_4, after_40):
        assert {name: len(values) for name, values in checkpoint["loss_logs"].items()} == \
            {name: 1 for name in checkpoint["loss_logs"]}


def test_keep_every_leaves_a_sparse_series_outside_the_rotation(tmp_path, capsys):
    """A collapse noticed late still has a good generator to go back to."""
    out = tmp_path / "run"
    flags = ["--max-images", "12", "--batch-size", "4", "--step-channels", "8", "--out", str(out),
             "--retain-checkpoints", "2", "--keep-every", "12"]
    assert celeba.main([*flags, "--epochs", "3"]) == 0  # 6 iterations an epoch
    assert celeba.main([*flags, "--epochs", "5", "--resume"]) == 0
    kept = sorted(p.name for p in (out / "checkpoints" / "kept").iterdir())
    assert kept == ["iteration-000000012.model", "iteration-000000024.model"]
    assert len(list((out / "checkpoints").glob("*.model"))) == 2  # the rotation, as before
    twelve = load_checkpoint(out / "checkpoints" / "kept" / kept[0])
    assert twelve["train_state"]["iteration"] == 12 and twelve["epoch"] == 2
    assert celeba.main([*flags, "--epochs", "6", "--resume"]) == 0  # the kept ones are not resumed from
    assert _newest(out)["epoch"] == 6


@pytest.mark.parametrize("loader", ["--image-cache", "--no-image-cache"])
def test_a_folder_of_images_from_the_wild_trains(tmp_path, capsys, loader):
    """A decompression bomb and a truncated PNG are skipped and named; a 16-bit PNG, an
    RGBA and a palette PNG and an EXIF-rotated JPEG train, as a person would see them."""
    import wild_images  # tests/, beside conftest.py

    folder = wild_images.folder(tmp_path / "wild")
    code = celeba.main(["--data-root", str(folder), "--epochs", "1", "--batch-size", "4", "--step-channels", "8",
                        "--num-workers", "0", "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "o"),
                        loader])
    assert code == 0
    out = capsys.readouterr().out
    if loader == "--image-cache":
        assert "Training on 8 images" in out  # 4 JPEGs, the 16-bit, RGBA and palette PNGs, the rotated JPEG
        assert "Skipped 2 file(s): " in out and f"{folder / 'bomb.png'} (cannot be decoded " \
            "(DecompressionBombError))" in out and f"{folder / 'truncated.png'} (cannot be decoded (OSError))" in out
    else:  # the bomb does not open; the truncated PNG opens, and is replaced by the next image when it fails
        assert "Training on 9 images" in out and f"Skipped 1 file(s): {folder / 'bomb.png'}" in out


def test_resume_auto_without_out_refuses_a_folder_a_live_job_holds(tmp_path, monkeypatch, capsys):
    """Without --out, --resume auto takes the config's newest run folder: a teammate's
    live run there is refused, not joined."""
    from torchgan_sagan.trainer.run_lock import acquire_run_lock

    monkeypatch.chdir(tmp_path)
    with acquire_run_lock(tmp_path / "runs" / "sagan_faces_32"):  # the teammate's job, alive
        message = _main_error(capsys, "--resume", "auto", "--max-images", "4", "--step-channels", "8")
    assert message.startswith(f"celeba.py: error: runs/sagan_faces_32 is in use by pid {os.getpid()} on ")
    assert not (tmp_path / "runs" / "sagan_faces_32" / "checkpoints").exists()  # nothing written there


def test_the_memorization_check_draws_as_many_samples_as_training_images_it_compares(tmp_path, monkeypatch):
    """A dozen training images get 100 samples, not 1,000 (most of a 128x128 preset's
    short run went there); a large set still gets 1,000 against its first 1,000."""
    from torchgan_sagan import get_config, make_trainer

    drawn, real_generate = [], celeba.generate
    monkeypatch.setattr(celeba, "generate", lambda g, n, **k: drawn.append(n) or real_generate(g, n, **k))
    generator = make_trainer(get_config("sagan_faces_32", step_channels=8), out=tmp_path / "run",
                             device="cpu").generator
    few = [(torch.rand(4, 1, 32, 32) * 2 - 1,) for _ in range(3)]
    celeba.memorization_check(generator, few, tmp_path)
    many = [(torch.rand(400, 1, 32, 32) * 2 - 1,) for _ in range(4)]
    celeba.memorization_check(generator, many, tmp_path)
    assert drawn == [100, 1000]
    assert (tmp_path / "nearest.png").is_file()
