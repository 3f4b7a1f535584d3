"""WADO-RS (PS3.18 10.4): instances as multipart/related; type="application/dicom", the stored bytes
streamed from the files in chunks (a Content-Length computed up front, nothing loaded whole), metadata as
DICOM JSON, frames (read from the file frame by frame, never the whole pixel data), and rendered images
through the portal's renderer. A catalog row naming a file outside
the data folders and import roots is never served."""
from __future__ import annotations

import logging
import os

import pydicom
from django.http import StreamingHttpResponse
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement

from apps.catalog.roots import Confinement
from apps.dicom import frames as stored_frames
from apps.dicom import multipart, split
from apps.dicom.errors import InvalidDicomFile
from apps.dicom.frames import FrameError, NoSuchFrame  # noqa: F401 - the view catches them from here
from apps.dicom.paths import NotRegularFile, open_regular

log = logging.getLogger(__name__)
CHUNK = 1024 * 1024


def servable(rows) -> list[tuple[object, str, int]]:
    """(row, path, size) of each row whose file is a regular file inside the roots now."""
    confined, found = Confinement(), []
    for row in rows.only("pk", "path", "transfer_syntax_uid"):
        there = confined.regular_file(row.path)
        if there is None:
            log.warning("catalog row %s names no regular file inside the data folders; not served", row.pk)
            continue
        found.append((row, *there))
    return found


def _file_chunks(path: str, size: int):
    with open_regular(path) as fp:
        left = size
        while left > 0:
            chunk = fp.read(min(CHUNK, left))
            if not chunk:
                raise OSError(f"{path} became shorter while it was sent")
            left -= len(chunk)
            yield chunk


def instances_response(files: list[tuple[object, str, int]], *, sock=None) -> StreamingHttpResponse:
    """The instances as one multipart/related answer with an exact Content-Length. With `sock` (the
    connection's socket, which gunicorn hands the application as environ["gunicorn.socket"]), each file
    goes to it with sendfile(2) between the part heads the server writes: no copy through Python, the
    difference between about 0.6x and above 1x of Orthanc's own DICOMweb plugin on a 263 MB study."""
    boundary = multipart.new_boundary()
    heads = [multipart.part_head(boundary, f"application/dicom; transfer-syntax={row.transfer_syntax_uid}"
                                 if row.transfer_syntax_uid else "application/dicom", size)
             for row, _, size in files]
    end = multipart.closing(boundary)
    total = sum(len(h) + size + 2 for h, (_, _, size) in zip(heads, files)) + len(end)
    body = _sent_body(files, heads, end, sock) if sock is not None else _copied_body(files, heads, end)
    response = StreamingHttpResponse(body, content_type=f'multipart/related; type="application/dicom"; '
                                                        f'boundary={boundary}')
    response["Content-Length"] = str(total)
    return response


def _copied_body(files, heads, end):
    for head, (_, path, size) in zip(heads, files):
        if size <= CHUNK:  # one write per small instance: the part's head and its bytes together
            try:
                with open_regular(path) as fp:
                    data = fp.read(size)
            except (OSError, NotRegularFile):
                log.warning("an instance could not be read while streaming; the answer is cut short")
                return
            if len(data) != size:
                log.warning("an instance changed size while streaming; the answer is cut short")
                return
            yield head + data + b"\r\n"
        else:
            yield head
            try:
                yield from _file_chunks(path, size)
            except OSError:
                log.warning("an instance could not be read while streaming; the answer is cut short")
                return
            yield b"\r\n"
    yield end


def _sent_body(files, heads, end, sock):
    """The heads (and the closing delimiter) go through the server, which writes each at once; the files
    go straight to the socket in between. A file that cannot be sent whole ends the answer short, as a
    client then sees (the Content-Length is not reached)."""
    separator = b""
    for head, (_, path, size) in zip(heads, files):
        yield separator + head
        try:
            with open_regular(path) as fp:
                if os.fstat(fp.fileno()).st_size < size or sock.sendfile(fp, 0, size) != size:
                    raise OSError("the file became shorter")
        except OSError:
            log.warning("an instance could not be sent while streaming; the answer is cut short")
            return
        separator = b"\r\n"
    yield separator + end


LARGE_VALUE_BYTES = 1024 * 1024  # a header value past this (a vendor's private blob) stays out of the metadata


def metadata(files) -> tuple[list[dict], list[str]]:
    """Each instance's header as DICOM JSON, and warnings. The pixel data is left out, and so is any other
    top-level value over LARGE_VALUE_BYTES other than a sequence: it is never read (a study whose
    instances each carry megabytes of private data would otherwise be read whole, then base64-encoded);
    a warning names its tag. Smaller values are inline, as viewers expect (overlays, icon images)."""
    answers, left_out = [], set()
    for row, path, _ in files:
        try:
            with open_regular(path) as fp:
                ds = pydicom.dcmread(fp, stop_before_pixels=True, defer_size=LARGE_VALUE_BYTES)
                left_out.update(_drop_unread_values(ds))
                answers.append(ds.to_json_dict(bulk_data_threshold=10 ** 9))  # a deferred sequence reads here
        except Exception as exc:  # noqa: BLE001 - one unreadable header must not hide the others
            log.info("metadata of catalog row %s not readable: %s", row.pk, type(exc).__name__)
    warnings = [f"{tag} left out: its value is over {LARGE_VALUE_BYTES} bytes" for tag in sorted(left_out)]
    return answers, warnings


def _drop_unread_values(ds) -> list[str]:
    """Remove the top-level values pydicom deferred (over LARGE_VALUE_BYTES) that are not sequences;
    the tags removed, as (gggg,eeee)."""
    dropped = []
    for tag, element in list(ds._dict.items()):
        if not isinstance(element, RawDataElement) or element.value is not None:
            continue
        vr = element.VR
        if vr is None:  # implicit VR: the dictionary's; a private tag's is unknown
            try:
                vr = dictionary_VR(tag)
            except KeyError:
                vr = "UN"
        if vr != "SQ":
            del ds._dict[tag]
            dropped.append(f"({tag.group:04X},{tag.element:04X})")
    return dropped


ENCAPSULATED_TYPES = {
    "1.2.840.10008.1.2.4.50": "image/jpeg", "1.2.840.10008.1.2.4.51": "image/jpeg",
    "1.2.840.10008.1.2.4.57": "image/jpeg", "1.2.840.10008.1.2.4.70": "image/jpeg",
    "1.2.840.10008.1.2.4.80": "image/jls", "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2", "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
}


def frames(path: str, numbers: list[int]) -> StreamingHttpResponse:
    """The frames asked for, as stored, one part each: located in the file (apps/dicom/frames.py) and
    read from it piece by piece while the answer goes out, so a frame of a 2 GB instance costs a chunk of
    memory. Raises frames.FrameError (NoSuchFrame for a number outside the instance's frames)."""
    fp = open_regular(path)
    try:
        stored = stored_frames.locate(fp, path)
        pieces = [stored.pieces(n - 1) for n in numbers]
    except BaseException:
        fp.close()
        raise
    syntax = stored.syntax
    media = (f"{ENCAPSULATED_TYPES.get(syntax, 'application/octet-stream')}; transfer-syntax={syntax}"
             if stored.encapsulated else f"application/octet-stream; transfer-syntax={syntax}")
    boundary = multipart.new_boundary()
    heads = [multipart.part_head(boundary, media, sum(length for _, length in frame)) for frame in pieces]
    end = multipart.closing(boundary)
    body = _FrameBody(fp, heads, pieces, end)
    response = StreamingHttpResponse(body, content_type=f'multipart/related; type="{media.split(";", 1)[0]}"; '
                                                        f'boundary={boundary}')
    response["Content-Length"] = str(sum(len(h) + sum(n for _, n in f) + 2 for h, f in zip(heads, pieces)) + len(end))
    return response


class _FrameBody:
    """The frames' multipart body, read from the open file as it is sent; the file is closed with the
    response (Django calls close() on a streamed body's iterable), sent or not."""

    def __init__(self, fp, heads, pieces, end):
        self.fp, self.heads, self.pieces, self.end = fp, heads, pieces, end

    def __iter__(self):
        out = bytearray()  # written in pieces of about CHUNK: one write for a viewer's one-frame answer
        try:
            for head, frame in zip(self.heads, self.pieces):
                out += head
                for at, length in frame:
                    for piece in split.chunks(self.fp.fileno(), at, length, size=CHUNK):
                        out += piece
                        if len(out) >= CHUNK:
                            yield bytes(out)
                            out.clear()
                out += b"\r\n"
        except InvalidDicomFile:
            log.warning("an instance became shorter while its frames were sent; the answer is cut short")
            return
        finally:
            self.fp.close()
        yield bytes(out + self.end)

    def close(self) -> None:
        self.fp.close()
