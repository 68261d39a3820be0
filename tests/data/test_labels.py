import json

import numpy as np
import pytest
from PIL import Image

from torchgan_sagan.data import build_image_cache
from torchgan_sagan.data.image_cache import list_caches, prune_caches
from torchgan_sagan.data.labels import class_index, class_subfolders, labelled_images, read_labels_file


def _png(path, level=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), level, np.uint8)).save(path)
    return path


def test_class_subfolders_number_classes_in_sorted_order_as_imagefolder_does(tmp_path):
    for name in ("zebra", "ant", "cat"):
        _png(tmp_path / name / "1.png")
    _png(tmp_path / "cat" / "deeper" / "2.png")  # anywhere below its class folder
    found = labelled_images(tmp_path)
    assert found.classes == ["ant", "cat", "zebra"]
    assert [(p.relative_to(tmp_path).as_posix(), y) for p, y in zip(found.files, found.labels)] == [
        ("ant/1.png", 0), ("cat/1.png", 1), ("cat/deeper/2.png", 1), ("zebra/1.png", 2)]
    _png(tmp_path / "loose.png")
    assert class_subfolders(tmp_path) is None
    with pytest.raises(ValueError, match="has images outside class subfolders.*--labels FILE"):
        labelled_images(tmp_path)


def test_celebas_parent_folder_is_read_as_celeba_is(tmp_path):
    _png(tmp_path / "img_align_celeba" / "000001.jpg")
    assert class_subfolders(tmp_path) is None  # a flat folder, not one class named img_align_celeba


def test_a_labels_file_csv_or_json_with_numbers_or_names(tmp_path):
    for i in range(4):
        _png(tmp_path / "images" / f"{i}.png")
    csv = tmp_path / "labels.csv"
    csv.write_text("file,class\n0.png,7\n1.png,2\n2.png,7\nnot-there.png,1\n")
    found = labelled_images(tmp_path / "images", csv)
    assert [p.name for p in found.files] == ["0.png", "1.png", "2.png"] and found.labels == [7, 2, 7]
    assert len(found.classes) == 8 and found.classes[7] == "7"  # numbers keep their index
    assert [p.name for p in found.unlabelled] == ["3.png"] and found.missing == [str(tmp_path / "images" /
                                                                                     "not-there.png")]
    named = tmp_path / "labels.json"
    named.write_text(json.dumps({"0.png": "dog", str(tmp_path / "images" / "3.png"): "cat"}))  # absolute too
    found = labelled_images(tmp_path / "images", named)
    assert found.classes == ["cat", "dog"] and found.labels == [1, 0]


@pytest.mark.parametrize("text, suffix, message", [
    ("[1, 2]", ".json", "must hold a JSON object"),
    ("{", ".json", "is not valid JSON"),
    ("just-a-file\n", ".csv", "line 1: expected 'file,class'"),
    ("file,class\n", ".csv", "names no file"),
])
def test_bad_labels_files_say_what_is_wrong(tmp_path, text, suffix, message):
    path = tmp_path / f"labels{suffix}"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_labels_file(path)


def test_labels_that_name_no_image_say_how_to_name_them(tmp_path):
    _png(tmp_path / "images" / "a.png")
    (tmp_path / "l.csv").write_text("images/a.png,1\n")
    with pytest.raises(ValueError, match="names none of the images in .*name them relative to that folder"):
        labelled_images(tmp_path / "images", tmp_path / "l.csv")
    with pytest.raises(ValueError, match="class numbers must be 0 or more"):
        class_index(["-1", "2"])


def test_the_image_cache_stores_the_labels_of_the_images_it_keeps(tmp_path):
    files = [_png(tmp_path / "images" / f"{i}.png", 10 * i) for i in range(4)]
    bad = tmp_path / "images" / "2.png"
    bad.write_bytes(b"not an image")
    built = build_image_cache(files, 16, crop=None, channels=1, cache_dir=tmp_path / "cache", workers=1,
                              progress=False, labels=[5, 6, 7, 8])
    assert built.built and built.labels.tolist() == [5, 6, 8]  # 2.png skipped, with its label
    again = build_image_cache(files, 16, crop=None, channels=1, cache_dir=tmp_path / "cache", workers=1,
                              progress=False, labels=[5, 6, 7, 8])
    assert not again.built and again.labels.tolist() == [5, 6, 8]
    other = build_image_cache(files, 16, crop=None, channels=1, cache_dir=tmp_path / "cache", workers=1,
                              progress=False, labels=[0, 6, 7, 8])
    assert other.built and other.path != built.path  # other labels: another cache
    unlabelled = build_image_cache(files, 16, crop=None, channels=1, cache_dir=tmp_path / "cache", workers=1,
                                   progress=False)
    assert unlabelled.labels is None and unlabelled.path not in (built.path, other.path)
    assert len(list_caches(tmp_path / "cache")) == 3  # the labels files are parts of caches, not caches
    prune_caches(tmp_path / "cache", older_than_days=0)
    assert not list((tmp_path / "cache").glob("*.npy"))
    with pytest.raises(ValueError, match="2 labels for 4 files"):
        build_image_cache(files, 16, cache_dir=tmp_path / "cache", labels=[1, 2])
