import pytest
import torch
from PIL import Image

from torchgan_sagan.data import (
    ImageFiles,
    embedded_digits,
    embedded_faces,
    find_images,
    folder_transform,
)


def _jpeg(path, size=(40, 48), color=(200, 120, 40)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, format="JPEG")
    return path


def test_find_images_in_a_flat_folder(tmp_path):
    for i in range(3):
        _jpeg(tmp_path / f"{i:06d}.jpg")
    (tmp_path / "list_attr_celeba.txt").write_text("not an image")
    assert [p.name for p in find_images(tmp_path)] == ["000000.jpg", "000001.jpg", "000002.jpg"]


def test_find_images_prefers_img_align_celeba_in_the_parent(tmp_path):
    _jpeg(tmp_path / "img_align_celeba" / "000001.jpg")
    _jpeg(tmp_path / "img_celeba" / "000001.jpg")  # the unaligned set beside it is ignored
    assert [p.parent.name for p in find_images(tmp_path)] == ["img_align_celeba"]


def test_find_images_in_an_imagefolder_tree(tmp_path):
    _jpeg(tmp_path / "cats" / "a.jpg")
    _jpeg(tmp_path / "dogs" / "b.PNG")
    assert len(find_images(tmp_path)) == 2


def test_find_images_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_images(tmp_path / "missing")
    with pytest.raises(ValueError, match="no images"):
        find_images(tmp_path)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="no images"):
        find_images(tmp_path)
    with pytest.raises(ValueError, match="is a file"):
        find_images(tmp_path / "notes.txt")


def test_folder_transform_matches_the_tutorial(tmp_path):
    image = Image.new("RGB", (178, 218), (255, 0, 0))
    x = folder_transform(64)(image)
    assert x.shape == (3, 64, 64)
    assert torch.allclose(x[0], torch.ones(64, 64)) and torch.allclose(x[1], -torch.ones(64, 64))
    assert folder_transform(32, crop=None, channels=1)(image).shape == (1, 32, 32)


def test_unreadable_files_are_skipped_and_counted(tmp_path):
    good = [_jpeg(tmp_path / f"{i}.jpg") for i in range(2)]
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"this is not a jpeg")
    dataset = ImageFiles(sorted(good + [bad]), folder_transform(16, crop=None))
    assert len(dataset) == 2 and dataset.skipped == [bad]
    image, label = dataset[0]
    assert image.shape == (3, 16, 16) and label == 0


def test_corrupt_image_data_is_replaced_with_a_warning(tmp_path):
    good = _jpeg(tmp_path / "a.jpg")
    truncated = tmp_path / "b.jpg"
    noise = (torch.rand(128, 128, 3) * 255).to(torch.uint8).numpy()
    Image.fromarray(noise).save(truncated, format="JPEG")
    data = truncated.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])  # header intact, image data cut
    dataset = ImageFiles([truncated, good], folder_transform(16, crop=None))
    assert len(dataset) == 2  # the header opens
    with pytest.warns(UserWarning, match="skipping image .*b.jpg.*truncated"):
        image, _ = dataset[0]
    assert torch.equal(image, dataset[1][0])


def test_no_readable_file_is_an_error(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    with pytest.raises(ValueError, match="none of the 1 image files could be read"):
        ImageFiles([bad], folder_transform(16))


def test_embedded_faces():
    faces = embedded_faces(32)
    images, labels = faces.tensors
    assert images.shape == (200, 1, 32, 32)
    assert images.min() >= -1 and images.max() <= 1 and images.std() > 0.1
    assert torch.allclose(images[100], images[0].flip(-1), atol=1e-5)  # mirrors follow the faces
    assert len(embedded_faces(16, flips=False, max_images=10)) == 10


def test_embedded_digits():
    digits = embedded_digits(32)
    images, labels = digits.tensors
    assert images.shape == (1797, 1, 32, 32)
    assert sorted(labels.unique().tolist()) == list(range(10))
    sevens_and_eights = embedded_digits(64, classes=[7, 8])
    assert sevens_and_eights.tensors[0].shape[1:] == (1, 64, 64)
    assert set(sevens_and_eights.tensors[1].tolist()) == {7, 8}
    assert len(sevens_and_eights) == 179 + 174


def test_images_come_out_as_a_person_sees_them(tmp_path):
    import numpy as np

    import wild_images
    from torchgan_sagan.data import open_image

    grey = np.asarray(open_image(wild_images.sixteen_bit(tmp_path / "16.png")))
    assert grey.shape == (96, 96, 3) and (grey == 128).all()  # not clipped to white
    layered = np.asarray(open_image(wild_images.rgba(tmp_path / "rgba.png")))
    assert (layered[:, :48] == 255).all() and (layered[:, 48:] == (0, 0, 255)).all()  # transparent: white
    palette = np.asarray(open_image(wild_images.palette_with_transparency(tmp_path / "p.png")))
    assert (palette[:, :48] == 255).all() and (palette[:, 48:] == (0, 255, 0)).all()
    turned = np.asarray(open_image(wild_images.exif_rotated(tmp_path / "r.jpg")))
    assert turned.shape == (96, 128, 3)  # as shown: wide, not tall
    assert turned[:, -24:].mean() > 240 and turned[:, :64].mean() < 15  # the stored top is now on the right
    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (8, 8), (0, 255, 255, 0)).save(cmyk)  # red in ink
    red = np.asarray(open_image(cmyk)).reshape(-1, 3).mean(0)
    assert red[0] > 200 and red[1] < 60 and red[2] < 60


def test_files_pillow_cannot_decode_are_named_with_a_reason(tmp_path, monkeypatch):
    import wild_images
    from torchgan_sagan.data import decoding, folders

    resize = folders.folder_resize(16, crop=None)
    assert decoding._decode(str(wild_images.bomb(tmp_path / "b.png")), resize) == \
        "cannot be decoded (DecompressionBombError)"
    assert decoding._decode(str(wild_images.truncated_png(tmp_path / "t.png")), resize) == \
        "cannot be decoded (OSError)"

    def broken_chunk(path):  # what Pillow raises for some PNGs cut at a chunk boundary
        raise SyntaxError("broken PNG file")

    monkeypatch.setattr(decoding, "open_image", broken_chunk)
    assert decoding._decode(str(tmp_path / "t.png"), resize) == "cannot be decoded (SyntaxError)"


def test_crops_are_celebas_for_celeba_a_square_elsewhere_and_never_padded(tmp_path):
    from torchgan_sagan.data import SQUARE, default_crop
    from torchgan_sagan.data.folders import TooSmallForCrop, folder_resize

    (tmp_path / "celeba" / "img_align_celeba").mkdir(parents=True)
    assert default_crop(tmp_path / "celeba") == default_crop(tmp_path / "celeba" / "img_align_celeba") == 160
    assert default_crop(tmp_path) == SQUARE
    wide = Image.new("RGB", (100, 60), "blue")
    assert folder_resize(30, crop=SQUARE)(wide).size == (30, 30)
    with pytest.raises(TooSmallForCrop, match="100x60 is smaller than the center crop 64"):
        folder_resize(32, crop=64)(wide)


def test_a_folder_under_the_home_folder_is_found(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    image = _jpeg(tmp_path / "faces" / "a.jpg")
    assert find_images("~/faces") == [image]
