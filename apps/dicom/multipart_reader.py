"""A multipart body (RFC 2046 5.1, as STOW-RS sends one) read from a stream part by part, in bounded memory:
the buffer never holds more than one read (`chunk_size`) plus a delimiter line or one part's header block,
whatever the size of a part, so a 2 GB instance costs what a CT slice costs. The delimiter is searched once over each byte (only
the bytes that could begin a delimiter are searched again after the next read); a header block, the
transport padding after a delimiter and the number of parts are capped, and every way a body can be
malformed is a MultipartError naming the part and the rule.

    for part in read_parts(stream, boundary, length):
        part.headers, part.number
        for piece in part.chunks(): ...   # what is not read is skipped when the next part is asked for
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

from apps.dicom.multipart import MultipartError

CHUNK_BYTES = 1024 * 1024
MAX_HEAD_BYTES = 16 * 1024  # a part's header lines: a Content-Type and a few more, never megabytes
MAX_PADDING = 64  # blanks allowed between a boundary and its line end (RFC 2046's transport padding)
MAX_PARTS = 100_000
_BLANKS = b" \t"


@dataclass
class Part:
    number: int  # from 1, in the body's order
    headers: dict[str, str]  # lower-case names
    _reader: "_Reader"

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "")

    def chunks(self) -> Iterator[bytearray]:
        """The part's content in pieces of at most about `chunk_size` bytes; read once."""
        return self._reader.content(self.number)


def read_parts(stream, boundary: str, length: int, *, chunk_size: int = CHUNK_BYTES,
               max_parts: int = MAX_PARTS) -> Iterator[Part]:
    """The parts of the `length`-byte multipart body `stream` (anything with read(n)) holds, one at a time.
    MultipartError when the boundary is missing or unusable, the body ends before `length` bytes or before
    its closing delimiter, a part's headers never end within MAX_HEAD_BYTES, or there are over `max_parts`."""
    if not boundary or len(boundary) > 200:
        raise MultipartError("the Content-Type names no boundary (or one over 200 characters)")
    return _Reader(stream, boundary.encode("latin-1"), length, chunk_size).parts(max_parts)


class _Reader:
    def __init__(self, stream, boundary: bytes, length: int, chunk_size: int):
        self._stream, self._length, self._left, self._chunk = stream, length, length, chunk_size
        self._delimiter = b"\r\n--" + boundary
        self._buffer = bytearray(b"\r\n")  # a delimiter may open the body: as if a line had ended before it
        self._at = 0  # where the unread bytes of the buffer begin
        self._in_part = 0  # the part whose content is being read; 0 between parts
        self._closed = False  # the closing delimiter was read

    def parts(self, max_parts: int) -> Iterator[Part]:
        for _ in self._skip_to_delimiter(None):  # the preamble yields nothing; this reads past it
            pass
        number = 0
        while not self._closed:
            number += 1
            if number > max_parts:
                raise MultipartError(f"more than {max_parts} parts")
            self._in_part = number
            yield Part(number, self._headers(number), self)
            for _ in self.content(number):  # the consumer left some (or all) of it: skip to the next delimiter
                pass
        while self._fill(keep=0):  # the epilogue, read to the end and dropped
            pass

    def content(self, number: int) -> Iterator[bytearray]:
        if self._in_part != number:
            return
        yield from self._skip_to_delimiter(number)
        self._in_part = 0

    def _skip_to_delimiter(self, number: int | None) -> Iterator[bytearray]:
        """Yields the bytes before the next delimiter (the content of part `number`, or the preamble when
        None, which is dropped) and leaves the reader after the delimiter's line."""
        delimiter, buffer = self._delimiter, self._buffer
        while True:
            found = buffer.find(delimiter, self._at)
            line_end = self._delimiter_line(found + len(delimiter)) if found >= 0 else None
            if line_end is not None:
                if number is not None and found > self._at:
                    yield buffer[self._at:found]
                self._at = line_end
                return
            # hold back only what may begin a delimiter the next read completes
            keep = found if found >= 0 else max(self._at, len(buffer) - len(delimiter) + 1)
            if number is not None and keep > self._at:
                yield buffer[self._at:keep]
            self._at = keep
            if not self._fill(keep=len(buffer) - keep):
                if number is None:
                    raise MultipartError("the body does not contain the boundary named in the Content-Type")
                raise MultipartError(f"part {number} is not closed by the boundary (the body is cut short)")

    def _delimiter_line(self, after: int) -> int | None:
        """After a delimiter's text at `after`: where the next part's headers begin (the closing "--" marks
        the body read), or None when the buffer does not yet tell. The delimiter never occurs inside a part
        (RFC 2046 5.1.1), so anything else after it is a malformed body, not content."""
        window = bytes(self._buffer[after:after + MAX_PADDING + 2])
        if window[:2] == b"--":
            self._closed = True
            return after + 2
        rest = window.lstrip(_BLANKS)
        padding = len(window) - len(rest)
        if rest[:2] == b"\r\n" and padding <= MAX_PADDING:
            return after + padding + 2
        if len(window) < MAX_PADDING + 2 and (rest in (b"", b"\r") or window == b"-"):
            return None
        where = f"after part {self._in_part}" if self._in_part else "opening the body"
        raise MultipartError(f"the boundary {where} is followed by something other than a line end or '--'")

    def _headers(self, number: int) -> dict[str, str]:
        buffer, searched = self._buffer, self._at  # no blank line ends before `searched` (less 3 bytes)
        while True:
            if buffer[self._at:self._at + 2] == b"\r\n":  # no header lines: the blank line comes at once
                self._at += 2
                return {}
            end = buffer.find(b"\r\n\r\n", max(self._at, searched - 3))
            if end >= 0:
                lines = bytes(buffer[self._at:end]).decode("latin-1").split("\r\n")
                self._at = end + 4
                headers = {}
                for line in lines:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
                return headers
            if len(buffer) - self._at > MAX_HEAD_BYTES:
                raise MultipartError(f"part {number}'s headers run over {MAX_HEAD_BYTES} bytes without ending")
            searched = len(buffer) - self._at  # where the bytes searched end once the fill moved them
            if not self._fill(keep=searched):
                raise MultipartError(f"part {number} has no end of its headers (the body is cut short)")

    def _fill(self, keep: int) -> bool:
        """Drop what was read, keeping the last `keep` bytes, and read the next piece of the body: False at
        its end. MultipartError when the stream ends before the Content-Length's bytes or fails."""
        if self._left <= 0:
            return False
        del self._buffer[:len(self._buffer) - keep]
        self._at = 0
        try:
            piece = self._stream.read(min(self._chunk, self._left))
        except OSError as exc:  # the client's side (a connection cut, a timeout), not ours: a body error
            raise MultipartError(f"the body could not be read past {self._length - self._left} of its "
                                 f"{self._length} bytes ({exc.strerror or exc})") from None
        if not piece:
            raise MultipartError(f"the body ended after {self._length - self._left} of its {self._length} bytes "
                                 "(Content-Length)")
        self._left -= len(piece)
        self._buffer += piece
        return True
