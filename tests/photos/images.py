"""Photos made for the tests, each with a property a test can see in the stored pixels."""
from pathlib import Path

import numpy as np
from PIL import Image

RED, BLUE, GREEN, WHITE = (255, 0, 0), (0, 0, 255), (0, 160, 0), (255, 255, 255)


def halves(width: int, height: int, left, right) -> np.ndarray:
    pixels = np.zeros((height, width, len(left)), np.uint8)
    pixels[:, : width // 2] = left
    pixels[:, width // 2:] = right
    return pixels


def rotated_jpeg(path: Path) -> Path:
    """400x200, left half red, right half blue, EXIF orientation 6 (shown turned 90° clockwise: 200 wide,
    400 high, red on top, blue below)."""
    image = Image.fromarray(halves(400, 200, RED, BLUE))
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(path, "JPEG", quality=95, exif=exif.tobytes())
    return path


def large_png_with_alpha(path: Path, width: int = 3000, height: int = 2000) -> Path:
    """Left half fully transparent (becomes white), right half opaque green."""
    Image.fromarray(halves(width, height, (0, 0, 0, 0), (*GREEN, 255)), "RGBA").save(path, compress_level=1)
    return path


def plain(path: Path, fmt: str, size=(64, 48), color=BLUE) -> Path:
    Image.new("RGB", size, color).save(path, fmt)
    return path


def near(pixel, color, tolerance: int = 40) -> bool:
    return all(abs(int(a) - int(b)) <= tolerance for a, b in zip(pixel, color))


def huge_grey_png(path: Path, width: int, height: int) -> Path:
    """A valid 8-bit grey PNG of width x height black pixels, written row by row: a few hundred kB on disk
    however many pixels it claims, and no memory spent making it."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    packer, row = zlib.compressobj(9), b"\x00" * (width + 1)  # filter byte 0, then the row's pixels
    rows_per_step = max(1, 2**22 // len(row))
    parts = []
    for start in range(0, height, rows_per_step):
        parts.append(packer.compress(row * min(rows_per_step, height - start)))
    parts.append(packer.flush())
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b""))
    return path
