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
