"""The sending end of a delivery: a tus 1.0.0 client over httpx. Django-free.

Why not tuspy (the tests use it against our receiving end): it brings requests and aiohttp and has no
hooks for cancellation and progress. This sender uses httpx (the project's one HTTP client), checks
every chunk with `Upload-Checksum` (crc32 when the server offers it, as our receiving end does: three
times sha1's pace; else sha1), backs off exponentially after a failure and asks the server
for its offset before going on, so confirmed bytes are never sent twice. It sends a file or any source
that produces its bytes on demand (a batch's zip, apps/delivery/zipstream.py). Each chunk is read once:
a helper thread reads (or produces) and hashes the next chunk while the current one is on the wire.
Before anybody may delete a source file, the receiving end must confirm the full length, every byte
verified by a chunk checksum we computed (or, for an upload partly sent without checksums, its whole sha1
equal to ours), and the file unpacked or stored."""
from __future__ import annotations

import base64
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import httpx

from apps.delivery.bundle import CHUNK_CHECKSUMS, file_sha1

TUS_VERSION = "1.0.0"
BLOCK = 1024 * 1024
MAX_RETRY_AFTER = 120.0  # the longest a 429's Retry-After makes us wait
DONE_STATES = {"unpacked", "stored"}


class TusError(Exception):
    """`restart`: the upload on the receiving end is unusable; a new attempt must create a fresh one."""

    def __init__(self, message: str, *, retriable: bool = False, http_status: int | None = None,
                 restart: bool = False, retry_after: float = 0.0):
        super().__init__(message)
        self.message, self.retriable, self.http_status, self.restart = message, retriable, http_status, restart
        self.retry_after = retry_after  # seconds the server asked us to wait (429)

    def __str__(self) -> str:
        return self.message


def reason(response: httpx.Response) -> str:
    """`: <the error it gave>` from a JSON error answer, to say why; empty otherwise."""
    try:
        body = response.json()
    except ValueError:
        return ""
    return f": {str(body.get('error'))[:300]}" if isinstance(body, dict) and body.get("error") else ""


def offset_of(response: httpx.Response, what: str) -> int:
    value = response.headers.get("Upload-Offset", "")
    if not value.isdigit():
        raise TusError(f"{what} answered Upload-Offset {value[:40]!r}, not a whole number of bytes", retriable=True)
    return int(value)


class SendCanceled(Exception):
    """should_stop() said so; the upload stays resumable."""


@dataclass
class Receipt:
    url: str
    length: int
    verified: int  # bytes the receiving end checked against our chunk sha1s
    sha1: str  # hex of the whole file, when it had to be compared as a whole
    state: str  # "unpacked" (a zip) or "stored" (one file)
    files: int
    sent_bytes: int = 0  # body bytes this call put on the wire
    started_at: int = 0  # the server's offset when this call began (> 0: resumed an earlier upload)
    resumed_at: list[int] = field(default_factory=list)  # offsets the server gave after each failure


def b64_checksum(algorithm: str, data) -> str:
    digest = CHUNK_CHECKSUMS[algorithm]()
    digest.update(data)
    return base64.b64encode(digest.digest()).decode()


class FileSource:
    """What the sender sends: `length`, `read(offset, size)`, `sha1()` (hex of the whole). A file here;
    a batch's zip produced while it is sent (apps/delivery/zipstream.py) has the same three."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.length = self.path.stat().st_size

    def read(self, offset: int, size: int) -> bytes:
        with open(self.path, "rb") as fp:
            fp.seek(offset)
            data = fp.read(size)
        if len(data) != min(size, self.length - offset):
            raise TusError(f"{self.path} shrank while being sent")
        return data

    def sha1(self) -> str:
        return file_sha1(self.path)


def encode_metadata(values: dict[str, str]) -> str:
    return ",".join(f"{key} {base64.b64encode(value.encode()).decode()}" for key, value in values.items())


class TusSender:
    def __init__(self, endpoint: str, token: str, *, chunk_size: int = 16 * BLOCK, retries: int = 6,
                 backoff: float = 0.5, max_backoff: float = 30.0, timeout: float = 60.0,
                 should_stop: Callable[[], bool] = lambda: False,
                 on_progress: Callable[[int, int], None] | None = None, sleep: Callable[[float], None] = time.sleep,
                 confirm_timeout: float = 3600.0):
        self.endpoint = endpoint.rstrip("/") + "/"
        self.chunk_size, self.retries, self.backoff, self.max_backoff = chunk_size, retries, backoff, max_backoff
        self.should_stop, self.on_progress, self.sleep = should_stop, on_progress, sleep
        self.algorithm: str | None = None  # the chunk checksum, from the server's discovery on the first send
        # TCP_NODELAY: headers and body leave in separate writes; with Nagle's algorithm on, the body
        # waits for the server's delayed ACK of the headers (~40 ms a request, the whole cost of a small file).
        transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        self.credentials = {"Authorization": f"Token {token}"}  # sent only once the endpoint proved it speaks tus
        self.confirm_timeout = confirm_timeout
        self.client = httpx.Client(headers={"Tus-Resumable": TUS_VERSION},
                                   timeout=httpx.Timeout(timeout, connect=10.0), transport=transport)

    def close(self) -> None:
        self.client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- one exchange --------------------------------------------------------------------------
    def _call(self, method: str, url: str, *, headers: dict | None = None, **kwargs) -> httpx.Response:
        headers = {**(self.credentials if method != "OPTIONS" else {}), **(headers or {})}
        try:
            response = self.client.request(method, url, headers=headers, **kwargs)
        except httpx.TimeoutException:
            raise TusError(f"{self.endpoint} did not answer in time", retriable=True) from None
        except httpx.TransportError as exc:
            raise TusError(f"connection to {self.endpoint} failed ({type(exc).__name__}: {exc})",
                           retriable=True) from None
        code = response.status_code
        if code in (401, 403):
            raise TusError(f"{self.endpoint} refused our credentials (HTTP {code}: {response.text[:200]}); "
                           "check the target's token and its upload permission", http_status=code)
        if code == 413:
            raise TusError(f"{self.endpoint} refused the size (HTTP 413: {response.text[:200]})", http_status=code)
        if code == 429:
            wait = response.headers.get("Retry-After", "")
            raise TusError(f"{self.endpoint} asks us to slow down (HTTP 429)", retriable=True, http_status=code,
                           retry_after=min(float(wait) if wait.isdigit() else self.backoff, MAX_RETRY_AFTER))
        if code >= 500:
            raise TusError(f"{self.endpoint} failed (HTTP {code}{reason(response)})", retriable=True,
                           http_status=code)
        return response

    def _checksum_algorithm(self) -> str:
        """Discovery, without our credentials: the endpoint must answer as a tus 1.0.0 server with the
        creation extension (as a receiving portal does) before anything else is sent; any other service
        at that URL (a PACS's REST API, a listener) gets neither the token nor the data. Then the chunk
        checksum to use: the first of ours (CHUNK_CHECKSUMS) the server lists, else sha1, which every
        tus server with the checksum extension has."""
        response = self._call("OPTIONS", self.endpoint)
        versions = {v.strip() for v in response.headers.get("Tus-Version", "").split(",")}
        extensions = {e.strip() for e in response.headers.get("Tus-Extension", "").split(",")}
        if (response.status_code not in (200, 204) or response.headers.get("Tus-Resumable") != TUS_VERSION
                or TUS_VERSION not in versions or "creation" not in extensions):
            raise TusError(f"{self.endpoint} does not answer as a tus {TUS_VERSION} upload endpoint with the creation "
                           f"extension (OPTIONS answered HTTP {response.status_code}); it is not a receiving portal, "
                           "so neither the token nor any data was sent", http_status=response.status_code)
        offered = {name.strip() for name in response.headers.get("Tus-Checksum-Algorithm", "").split(",")}
        return next((name for name in CHUNK_CHECKSUMS if name in offered), "sha1")

    def _create(self, length: int, filename: str, first: tuple[bytes, str] | None = None) -> httpx.Response:
        """POST a new upload; with `first` (the whole small file and its base64 sha1) the file rides
        along (creation-with-upload): one request instead of two."""
        headers = {"Upload-Length": str(length), "Upload-Metadata": encode_metadata({"filename": filename})}
        content = None
        if first is not None:
            content = self._body(first[0], [0])
            headers.update({"Content-Type": "application/offset+octet-stream", "Content-Length": str(len(first[0])),
                            "Upload-Checksum": f"{self.algorithm} {first[1]}"})
        response = self._call("POST", self.endpoint, headers=headers, content=content)
        if response.status_code != 201 or "Location" not in response.headers:
            raise TusError(f"{self.endpoint} did not create the upload (HTTP {response.status_code}: "
                           f"{response.text[:200]})", http_status=response.status_code,
                           retriable=response.status_code == 460)
        return response

    def _same_origin(self, location: str) -> str:
        """The upload's URL; it must be on the endpoint's own scheme, host and port (the token and the
        data go there)."""
        endpoint = httpx.URL(self.endpoint)
        url = endpoint.join(location)
        if (url.scheme, url.host, url.port) != (endpoint.scheme, endpoint.host, endpoint.port):
            raise TusError(f"{self.endpoint} named an upload on another server ({url.scheme}://{url.host}"
                           f"{':' + str(url.port) if url.port else ''}); nothing is sent there")
        return str(url)

    def _body(self, data: bytes, counter: list[int]):
        view = memoryview(data)
        for start in range(0, len(view), BLOCK):
            if self.should_stop():
                raise SendCanceled()
            block = view[start:start + BLOCK]
            counter[0] += len(block)
            yield block

    def _offset(self, url: str, length: int) -> int | None:
        """The server's offset, or None when it no longer knows the upload (expired, deleted) or knows
        it with another length (the source changed: its bytes cannot be continued)."""
        response = self._call("HEAD", url)
        if response.status_code in (404, 410):
            return None
        if response.status_code != 200 or "Upload-Offset" not in response.headers:
            raise TusError(f"HEAD {url} answered HTTP {response.status_code}", retriable=True)
        if response.headers.get("Upload-Length") != str(length):
            return None
        return offset_of(response, f"HEAD {url}")

    def _patch(self, url: str, offset: int, data: bytes, checksum: str, counter: list[int]) -> httpx.Response:
        response = self._call("PATCH", url, content=self._body(data, counter), headers={
            "Content-Type": "application/offset+octet-stream", "Content-Length": str(len(data)),
            "Upload-Offset": str(offset), "Upload-Checksum": f"{self.algorithm} {checksum}"})
        code = response.status_code
        if code == 204:
            return response
        if code in (409, 460):  # offset moved under us / bytes damaged on the way: ask again, resend
            raise TusError(f"PATCH at {offset} answered HTTP {code}: {response.text[:200]}", retriable=True,
                           http_status=code)
        raise TusError(f"PATCH at {offset} answered HTTP {code}: {response.text[:200]}", http_status=code)

    # --- the whole file ------------------------------------------------------------------------
    def send(self, source, filename: str, *, url: str | None = None,
             on_created: Callable[[str], None] | None = None) -> Receipt:
        """Upload `source` (a file's path, or anything with FileSource's `length`, `read` and `sha1`)
        as `filename` (resuming `url` if the server still has it) and return the receiving end's
        confirmation. Raises TusError (with .retriable) or SendCanceled."""
        if isinstance(source, (str, Path)):
            source = FileSource(source)
        if self.algorithm is None:
            self.algorithm = self._checksum_algorithm()
        length = source.length
        counter, resumed, failures = [0], [], 0
        confirmed = self._offset(url, length) if url else None
        last, started_at = None, confirmed or 0
        if confirmed is None:
            small = 0 < length <= self.chunk_size
            first = None
            if small:
                data = source.read(0, length)
                first = (data, b64_checksum(self.algorithm, data))
            try:
                last = self._create(length, filename, first)
            except TusError as exc:
                if not (small and exc.retriable):
                    raise
                failures += 1  # the body did not make it: create again without it, then PATCH
                self.sleep(max(self.backoff, exc.retry_after))
                last = self._create(length, filename)
            url = self._same_origin(last.headers["Location"])
            confirmed = offset_of(last, f"POST {self.endpoint}") if "Upload-Offset" in last.headers else 0
            if on_created:
                on_created(url)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tus-read") as helper:
            def chunk_at(offset):
                data = source.read(offset, min(length, (offset // self.chunk_size + 1) * self.chunk_size) - offset)
                return offset, data, b64_checksum(self.algorithm, data)

            ahead = helper.submit(chunk_at, confirmed) if confirmed < length else None
            while confirmed < length:
                if self.should_stop():
                    raise SendCanceled()
                prepared = ahead.result() if ahead is not None else None
                if prepared is None or prepared[0] != confirmed:  # after a failure: read where the server is
                    prepared = chunk_at(confirmed)
                offset, data, checksum = prepared
                end = offset + len(data)
                ahead = helper.submit(chunk_at, end) if end < length else None
                try:
                    last = self._patch(url, offset, data, checksum, counter)
                    known = offset_of(last, f"PATCH {url}")
                    failures = 0
                except TusError as exc:
                    if not exc.retriable or failures >= self.retries:
                        raise
                    failures += 1
                    self.sleep(max(min(self.backoff * 2 ** (failures - 1), self.max_backoff), exc.retry_after))
                    known, last = self._offset(url, length), None
                    if known is None:
                        raise TusError(f"the receiving end lost upload {url} (expired or deleted)") from None
                    resumed.append(known)
                if known < confirmed:
                    raise TusError(f"the receiving end went back from offset {confirmed} to {known}")
                confirmed = known
                if self.on_progress:
                    self.on_progress(confirmed, length)
        receipt = self._confirm(url, source, last)
        receipt.sent_bytes, receipt.resumed_at, receipt.started_at = counter[0], resumed, started_at
        return receipt

    def _outcome(self, url: str) -> dict:
        """The upload's outcome as JSON, asked again (backing off, at most `confirm_timeout` seconds)
        while the receiving end is still unpacking it."""
        deadline, wait = time.monotonic() + self.confirm_timeout, self.backoff
        while True:
            response = self._call("GET", url, headers={"Accept": "application/json"})
            try:
                answer = response.json()
            except ValueError:
                raise TusError(f"GET {url} answered HTTP {response.status_code} without the upload's outcome",
                               retriable=True) from None
            if not isinstance(answer, dict):
                raise TusError(f"GET {url} answered HTTP {response.status_code} with a JSON "
                               f"{type(answer).__name__}, not the upload's outcome (an object)", retriable=True)
            if answer.get("state") != "unpacking":
                return answer
            if time.monotonic() > deadline:
                raise TusError(f"the receiving end was still unpacking {url} after {self.confirm_timeout:.0f} s",
                               retriable=True)
            if self.should_stop():
                raise SendCanceled()
            self.sleep(wait)
            wait = min(wait * 2, self.max_backoff)

    def _confirm(self, url: str, source, last: httpx.Response | None) -> Receipt:
        """The receiving end's outcome: from the answer that completed the upload, else asked with GET."""
        length = source.length
        headers = last.headers if last is not None else {}
        numbers = [headers.get(name, "0") for name in ("Upload-Verified", "Upload-Files", "Upload-Offset")]
        if headers.get("Upload-State") in DONE_STATES and all(n.isdigit() for n in numbers):
            verified, files, offset = map(int, numbers)
            answer = {"state": headers["Upload-State"], "sha1": headers.get("Upload-Sha1", ""), "length": length,
                      "verified": verified, "files": files, "offset": offset}
        else:
            answer = self._outcome(url)
        if answer.get("state") not in DONE_STATES:  # refused for good: a new attempt needs a new upload
            raise TusError(f"the receiving end did not accept the file: {answer.get('error') or answer.get('state')}",
                           restart=True)
        if answer.get("length") != length or answer.get("offset") != length:
            raise TusError(f"the receiving end confirmed {answer.get('offset')}/{answer.get('length')} bytes, "
                           f"not {length}")
        sha1 = ""
        if answer.get("verified") != length:  # partly sent without checksums (not by us): compare whole files
            sha1 = source.sha1()
            if answer.get("sha1") != sha1:
                raise TusError(f"the receiving end's copy has sha1 {answer.get('sha1')}, ours {sha1}", restart=True)
        files = answer.get("files", 0)
        return Receipt(url=url, length=length, verified=answer["verified"], sha1=sha1, state=answer["state"],
                       files=files if isinstance(files, int) else 0)
