import os
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

from torchgan_sagan.data import ImageFiles, build_image_cache, folder_transform, to_unit_range
from torchgan_sagan.data import decoding


@pytest.fixture
def jpegs(tmp_path):
    """Six JPEGs of CelebA's size with smooth random content, and a PNG."""
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        small = Image.fromarray(rng.integers(0, 256, (7, 6, 3), dtype=np.uint8))
        small.resize((178, 218), Image.BICUBIC).save(folder / f"{i}.jpg")
    Image.fromarray(rng.integers(0, 256, (40, 30), dtype=np.uint8)).save(folder / "gray.png")
    return sorted(folder.iterdir())


@pytest.mark.parametrize("crop, channels", [(160, 3), (None, 3), (160, 1)])
def test_cached_pixels_are_the_pil_paths_to_the_last_bit(jpegs, tmp_path, crop, channels):
    cache = build_image_cache(jpegs, 32, crop=crop, channels=channels, cache_dir=tmp_path / "cache", workers=1,
                              progress=False)
    small = [p for p in jpegs if p.name == "gray.png"] if crop else []  # 30x40: not padded to 160 with black
    assert cache.skipped == small and all("smaller than the center crop 160" in cache.reasons[str(p)] for p in small)
    kept = [p for p in jpegs if p not in small]
    assert cache.built and cache.images.dtype == np.uint8 and cache.images.shape == (len(kept), channels, 32, 32)
    reference = ImageFiles(kept, folder_transform(32, crop=crop, channels=channels))
    for i in range(len(kept)):
        torch.testing.assert_close(to_unit_range(torch.from_numpy(np.array(cache.images[i]))), reference[i][0],
                                   rtol=0, atol=0)


def test_a_second_start_reads_the_cache_and_decodes_nothing(jpegs, tmp_path, monkeypatch):
    first = build_image_cache(jpegs, 16, cache_dir=tmp_path, workers=1, progress=False)
    monkeypatch.setattr(decoding, "_decode", lambda *a: pytest.fail("decoded again"))
    second = build_image_cache(jpegs, 16, cache_dir=tmp_path, workers=1, progress=False)
    assert not second.built and second.path == first.path
    assert np.array_equal(second.images, first.images)


def test_a_changed_file_or_option_builds_a_new_cache(jpegs, tmp_path):
    first = build_image_cache(jpegs, 16, cache_dir=tmp_path, workers=1, progress=False)
    assert build_image_cache(jpegs, 16, crop=100, cache_dir=tmp_path, workers=1, progress=False).path != first.path
    Image.new("RGB", (178, 218), "red").save(jpegs[0])
    os.utime(jpegs[0], ns=(1, 1))  # a new mtime (and the same size would not hide it)
    changed = build_image_cache(jpegs, 16, cache_dir=tmp_path, workers=1, progress=False)
    assert changed.built and changed.path != first.path
    assert not np.array_equal(changed.images[0], first.images[0])


def test_unreadable_files_are_skipped_and_named(jpegs, tmp_path):
    broken = jpegs[0].parent / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    cache = build_image_cache([*jpegs, broken], 16, crop=None, cache_dir=tmp_path, workers=2, progress=False)
    assert len(cache) == len(jpegs) and cache.skipped == [broken]
    assert cache.reasons == {str(broken): "cannot be decoded (UnidentifiedImageError)"}
    again = build_image_cache([*jpegs, broken], 16, crop=None, cache_dir=tmp_path, progress=False)
    assert again.skipped == [broken] and again.reasons == cache.reasons
    with pytest.raises(ValueError, match="none of the 1 image files could be read"):
        build_image_cache([broken], 16, cache_dir=tmp_path, progress=False)


def test_an_interrupted_build_leaves_no_cache_to_serve(jpegs, tmp_path, monkeypatch):
    calls = []

    def decode_then_die(*args):
        calls.append(args)
        if len(calls) == 3:
            raise KeyboardInterrupt  # as a kill mid-build
        return real(*args)

    real = decoding._decode
    monkeypatch.setattr(decoding, "_decode", decode_then_die)
    with pytest.raises(KeyboardInterrupt):
        build_image_cache(jpegs, 16, cache_dir=tmp_path, workers=1, progress=False)
    assert not list(tmp_path.glob("*.npy")) and not list(tmp_path.glob(".tmp-*"))
    monkeypatch.setattr(decoding, "_decode", real)
    assert build_image_cache(jpegs, 16, cache_dir=tmp_path, workers=1, progress=False).built


def test_bad_options_name_the_problem(jpegs, tmp_path):
    with pytest.raises(ValueError, match="channels must be 1"):
        build_image_cache(jpegs, 16, channels=2, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="no image files"):
        build_image_cache([], 16, cache_dir=tmp_path)


def test_a_copy_of_the_folder_elsewhere_uses_the_same_cache(jpegs, tmp_path):
    """A dataset staged to each job's scratch disk with its times (cp -p, rsync -a)."""
    first = build_image_cache(jpegs, 16, crop=None, cache_dir=tmp_path / "cache", workers=1, progress=False)
    staged = tmp_path / "scratch" / "job-17"
    shutil.copytree(jpegs[0].parent, staged)  # copy2: times kept
    again = build_image_cache(sorted(staged.iterdir()), 16, crop=None, cache_dir=tmp_path / "cache", workers=1,
                              progress=False)
    assert not again.built and again.path == first.path


@pytest.mark.slow  # a subprocess, killed
def test_a_build_killed_half_way_leaves_nothing_behind_the_next_build(jpegs, tmp_path):
    """SIGKILL in the middle of decoding: its partial array and its lock stay; the next
    build takes the lock over, removes the partial file and builds."""
    cache = tmp_path / "cache"
    script = "\n".join([
        "import time",
        "from torchgan_sagan.data import image_cache",
        "from torchgan_sagan.data import decoding",
        "decode = decoding._decode",
        "decoding._decode = lambda *a: (time.sleep(0.5), decode(*a))[1]",
        f"image_cache.build_image_cache({[str(p) for p in jpegs]!r}, 16, crop=None, cache_dir={str(cache)!r}, "
        "workers=1, progress=False)"])
    process = subprocess.Popen([sys.executable, "-c", script])
    for _ in range(300):
        if list(cache.glob(".tmp-*.npy")):
            break
        time.sleep(0.05)
    time.sleep(0.3)
    process.kill()
    process.wait()
    assert list(cache.glob(".tmp-*.npy")) and list(cache.glob("*.lock")) and not list(cache.glob("images-*.npy"))
    built = build_image_cache(jpegs, 16, crop=None, cache_dir=cache, workers=1, progress=False)
    assert built.built and len(built) == len(jpegs)
    assert not list(cache.glob(".tmp-*")) and not list(cache.glob("*.lock"))


def test_builds_of_one_cache_wait_for_each_other(jpegs, tmp_path, capsys):
    from torchgan_sagan.data.image_cache import _lock_path, cache_key
    from torchgan_sagan.locks import acquire_lock

    cache = tmp_path / "cache"
    held = acquire_lock(_lock_path(cache, cache_key(jpegs, 16, None, 3)), what="a build", poll=0.05)
    threading.Timer(0.5, held.release).start()  # the other job's build ends
    start = time.monotonic()
    built = build_image_cache(jpegs, 16, crop=None, cache_dir=cache, workers=1, progress=False)
    assert time.monotonic() - start >= 0.4 and built.built
    assert f"Waiting for pid {os.getpid()}" in capsys.readouterr().err


def test_caches_are_listed_and_pruned_but_not_while_built(jpegs, tmp_path, capsys):
    from torchgan_sagan.data.image_cache import _lock_path, cache_key, main
    from torchgan_sagan.locks import acquire_lock

    cache = tmp_path / "cache"
    old = build_image_cache(jpegs, 16, crop=None, cache_dir=cache, workers=1, progress=False)
    new = build_image_cache(jpegs, 20, crop=None, cache_dir=cache, workers=1, progress=False)
    a_month = time.time() - 31 * 86400
    os.utime(old.path.with_suffix(".skipped.json"), (a_month, a_month))
    (cache / ".tmp-99999999-images-0123456789abcdef01234567.npy").write_bytes(b"left by a killed build")
    assert main(["--list", "--cache-dir", str(cache)]) == 0
    listed = capsys.readouterr().out
    assert f"{len(jpegs)} images 3x16x16, used 31.0 days ago, from {jpegs[0].parent}" in listed
    assert "partial file of a build (killed)" in listed and "3 file(s)" in listed
    assert main(["--prune", "--cache-dir", str(cache)]) == 0
    assert not old.path.exists() and new.path.exists() and not list(cache.glob(".tmp-*"))
    with acquire_lock(_lock_path(cache, cache_key(jpegs, 20, None, 3)), what="a build"):
        main(["--prune", "--older-than", "0", "--cache-dir", str(cache)])
        assert new.path.exists()  # a build holds it
    main(["--prune", "--older-than", "0", "--cache-dir", str(cache)])
    assert not list(cache.glob("images-*"))
