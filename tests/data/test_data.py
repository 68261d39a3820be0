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
    with pytest.warns(UserWarning, match="skipping corrupt image"):
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
