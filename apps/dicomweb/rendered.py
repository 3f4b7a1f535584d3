"""WADO-RS rendered and thumbnail resources (PS3.18 10.4.1.1.3): one frame as JPEG or PNG through the
portal's renderer (apps/dicom/render.py), with the `window` (center,width[,function]), `quality` and
`viewport` (width,height) parameters."""
from __future__ import annotations

import io

from PIL import Image

from apps.dicom import render

THUMBNAIL = 128
FUNCTIONS = {"linear": "LINEAR", "linear-exact": "LINEAR_EXACT", "sigmoid": "SIGMOID"}


class RenderRequestError(ValueError):
    """A parameter that cannot be used (400 naming it)."""


def _window(text: str) -> tuple[float, float, str]:
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (2, 3):
        raise RenderRequestError("window must be center,width or center,width,function")
    try:
        center, width = float(parts[0]), float(parts[1])
    except ValueError:
        raise RenderRequestError(f"window '{text[:40]}': center and width must be numbers") from None
    if width <= 0:
        raise RenderRequestError("window: the width must be above 0")
    function = FUNCTIONS.get(parts[2].lower() if len(parts) == 3 else "linear")
    if function is None:
        raise RenderRequestError(f"window: the function must be one of {', '.join(FUNCTIONS)}")
    return center, width, function


def _viewport(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.split(",")[:2])
    except ValueError:
        raise RenderRequestError("viewport must be width,height in pixels") from None
    if not (0 < width <= 4096 and 0 < height <= 4096):
        raise RenderRequestError("viewport: width and height must lie between 1 and 4096")
    return width, height


def media_type(accept: str) -> str:
    """image/png when asked for it (and not JPEG first), else image/jpeg."""
    accept = (accept or "").lower()
    if "image/png" in accept and ("image/jpeg" not in accept or accept.index("image/png") < accept.index("image/jpeg")):
        return "image/png"
    return "image/jpeg"


def render_frame(path: str, params, *, frame: int = 1, thumbnail: bool = False, media: str = "image/jpeg") -> bytes:
    """The frame as an image; RenderRequestError for bad parameters, render.RenderError for a file that
    cannot be shown."""
    window = _window(params["window"]) if params.get("window") else None
    viewport = _viewport(params["viewport"]) if params.get("viewport") else None
    try:
        quality = int(params.get("quality", render.JPEG_QUALITY))
    except ValueError:
        raise RenderRequestError("quality must be a whole number from 1 to 100") from None
    if not 1 <= quality <= 100:
        raise RenderRequestError("quality must be a whole number from 1 to 100")
    if frame < 1:
        raise RenderRequestError(f"frame {frame} does not exist (frames are numbered from 1)")
    try:
        picture = render.read_frame(path, frame - 1)  # a large file: this frame only
    except render.NoFrame as exc:
        raise RenderRequestError(str(exc)) from None
    ds = picture.ds
    if window is not None:
        for keyword in ("VOILUTSequence",):
            if keyword in ds:
                del ds[keyword]
        ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction = window[0], window[1], window[2]
    image = Image.fromarray(picture.display())
    if thumbnail:
        image.thumbnail((THUMBNAIL, THUMBNAIL))
    elif viewport is not None:
        image.thumbnail(viewport)
    out = io.BytesIO()
    if media == "image/png":
        image.save(out, "PNG")
    else:
        image.save(out, "JPEG", quality=quality)
    return out.getvalue()
