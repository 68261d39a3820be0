"""Image files as they come from the wild, made on the spot: a decompression bomb (a
PNG header of 20,000 x 20,000 pixels), a PNG cut in its image data, a 16-bit PNG, an
RGBA PNG, a palette PNG with a transparent colour, and a JPEG stored sideways with an
EXIF orientation."""

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb(path: Path) -> Path:
    """Pillow refuses it when opened: more than twice Image.MAX_IMAGE_PIXELS."""
    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b""))
                     + _chunk(b"IEND", b""))
    return path


def truncated_png(path: Path) -> Path:
    """Its header opens; its pixels end half-way."""
    pixels = np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def sixteen_bit(path: Path, value: int = 32896) -> Path:
    """A 96x96 grey of ``value`` in 16 bits (32896 / 257 = 128 in 8 bits)."""
    Image.fromarray(np.full((96, 96), value, dtype=np.uint16)).save(path)
    return path


def rgba(path: Path) -> Path:
    """Left half transparent red, right half opaque blue."""
    pixels = np.zeros((96, 96, 4), dtype=np.uint8)
    pixels[:, :48] = (255, 0, 0, 0)
    pixels[:, 48:] = (0, 0, 255, 255)
    Image.fromarray(pixels, "RGBA").save(path)
    return path


def palette_with_transparency(path: Path) -> Path:
    """A palette image whose colour 0 (red) is transparent, colour 1 green."""
    im = Image.new("P", (96, 96), 0)
    im.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    im.paste(1, (48, 0, 96, 96))
    im.save(path, transparency=0)
    return path


def exif_rotated(path: Path) -> Path:
    """Stored 96 wide and 128 tall, white at the stored top; EXIF orientation 6 says to
    turn it 90 degrees clockwise, so a person sees 128 wide and 96 tall, white on the right."""
    pixels = np.zeros((128, 96, 3), dtype=np.uint8)
    pixels[:32] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels).save(path, exif=exif, quality=95)
    return path


def folder(root: Path, good: int = 4) -> Path:
    """``good`` ordinary 80x96 JPEGs and one of each kind above."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(good):
        Image.fromarray(rng.integers(0, 256, (96, 80, 3), dtype=np.uint8)).save(root / f"good{i}.jpg")
    bomb(root / "bomb.png")
    truncated_png(root / "truncated.png")
    sixteen_bit(root / "sixteen.png")
    rgba(root / "rgba.png")
    palette_with_transparency(root / "palette.png")
    exif_rotated(root / "rotated.jpg")
    return root
