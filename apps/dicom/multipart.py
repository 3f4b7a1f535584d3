"""multipart/related bodies for DICOMweb (PS3.18 8.6.1.2, RFC 2387): writing parts from files without
loading them whole, and splitting a received body (a bytes-like object or an mmap) into its parts."""
from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

CRLF = b"\r\n"
_PARAM = re.compile(r';\s*([A-Za-z0-9_.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)')


class MultipartError(ValueError):
    """A body that is not multipart/related as announced, with the reason in words."""


def parse_media_type(header: str) -> tuple[str, dict[str, str]]:
    """'multipart/related; type="application/dicom"; boundary=x' -> ('multipart/related', {...})."""
    header = header or ""
    main = header.split(";", 1)[0].strip().lower()
    params = {name.lower(): value.strip('"') for name, value in _PARAM.findall(header[len(header.split(";", 1)[0]):])}
    return main, params


def new_boundary() -> str:
    return f"dicomweb-{uuid.uuid4().hex}"


def part_head(boundary: str, content_type: str, length: int, location: str = "") -> bytes:
    lines = [f"--{boundary}", f"Content-Type: {content_type}", f"Content-Length: {length}"]
    if location:
        lines.append(f"Content-Location: {location}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def closing(boundary: str) -> bytes:
    return f"--{boundary}--\r\n".encode("ascii")


@dataclass
class Part:
    headers: dict[str, str]  # lower-case names
    start: int  # the body's offsets in the whole message
    end: int

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")


def split(body, boundary: str, *, max_parts: int = 100_000) -> list[Part]:
    """The parts of a multipart body (offsets into `body`, nothing copied). MultipartError when the
    boundary never appears or the closing delimiter is missing."""
    if not boundary or len(boundary) > 200:
        raise MultipartError("the Content-Type names no boundary (or one over 200 characters)")
    delimiter = b"--" + boundary.encode("latin-1")
    position = body.find(delimiter)
    if position < 0:
        raise MultipartError("the body does not contain the boundary named in the Content-Type")
    parts = []
    while True:
        after = position + len(delimiter)
        if body[after:after + 2] == b"--":
            return parts
        line_end = body.find(CRLF, after)
        if line_end < 0:
            raise MultipartError("the body ends inside a delimiter line")
        head_end = body.find(CRLF + CRLF, line_end)
        if head_end == line_end:  # no header lines at all: the blank line follows the delimiter directly
            headers, content_start = {}, line_end + 2
        elif head_end < 0:
            raise MultipartError(f"part {len(parts) + 1} has no end of its headers")
        else:
            headers = {}
            for line in bytes(body[line_end + 2:head_end]).decode("latin-1").split("\r\n"):
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            content_start = head_end + 4
        following = body.find(CRLF + delimiter, content_start)
        if following < 0:
            raise MultipartError(f"part {len(parts) + 1} is not closed by the boundary (the body is cut short)")
        parts.append(Part(headers, content_start, following))
        if len(parts) > max_parts:
            raise MultipartError(f"more than {max_parts} parts")
        position = following + 2
