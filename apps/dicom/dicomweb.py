"""DICOMweb client: STOW-RS (store, several instances per request) and QIDO-RS (query), over httpx.

Files go as their bytes in multipart/related; type="application/dicom" bodies (PS3.18 10.5). The
server's answer (DICOM JSON) says per instance what was stored (00081199 Referenced SOP Sequence),
stored with a warning (00081196 Warning Reason) or refused (00081198 Failed SOP Sequence with
00081197 Failure Reason). HTTP-level failures are DicomWebError, retriable for 5xx and timeouts.
"""
from __future__ import annotations

import logging
import os
import ssl
import uuid
from dataclasses import dataclass, field
from typing import Callable, Iterable

import httpx

from apps.dicom import files, split
from apps.dicom.errors import DicomWebError, InvalidDicomFile
from apps.dicom.peers import DicomWebEndpoint
from apps.dicom.status import describe

log = logging.getLogger(__name__)

REFERENCED_SOP_SEQUENCE = "00081199"
FAILED_SOP_SEQUENCE = "00081198"
FAILURE_REASON = "00081197"
WARNING_REASON = "00081196"
REFERENCED_SOP_INSTANCE_UID = "00081155"
QIDO_LEVELS = ("studies", "series", "instances")


@dataclass
class StowResult:
    stored: list[str] = field(default_factory=list)  # SOP Instance UIDs the server stored
    failed: list[tuple[str, str]] = field(default_factory=list)  # (SOP Instance UID or file path, reason)
    warnings: list[tuple[str, str]] = field(default_factory=list)  # stored, with the server's warning
    requests: int = 0
    sent: dict[str, str] = field(default_factory=dict)  # SOP Instance UID -> the source it was read from


def _client(endpoint: DicomWebEndpoint) -> httpx.Client:
    headers, auth = {}, None
    if endpoint.auth == "basic":
        auth = httpx.BasicAuth(endpoint.username, endpoint.password)
    elif endpoint.auth == "bearer":
        headers["Authorization"] = f"Bearer {endpoint.token}"
    return httpx.Client(base_url=endpoint.base_url.rstrip("/") + "/", headers=headers, auth=auth,
                        timeout=endpoint.timeout, verify=endpoint.verify_tls)


def _request(client: httpx.Client, endpoint: DicomWebEndpoint, method: str, path: str, **kwargs) -> httpx.Response:
    """One HTTP exchange; transport problems and error statuses become DicomWebError in words.
    409 (STOW: nothing stored) and 202 (some stored) carry the per-instance answer, so pass through."""
    try:
        response = client.request(method, path, **kwargs)
    except httpx.TimeoutException:
        raise DicomWebError(f"{endpoint.label} did not answer within {endpoint.timeout:g} s; it may be "
                            "overloaded. Try again or raise the timeout.", retriable=True) from None
    except httpx.TransportError as exc:
        if _caused_by(exc, ssl.SSLCertVerificationError):  # a configuration problem: retrying cannot help
            raise DicomWebError(f"The TLS certificate of {endpoint.label} was not accepted ({exc}). Check that the "
                                "server's certificate is trusted here and names this host.") from None
        raise DicomWebError(f"Cannot reach {endpoint.label} ({exc}). Check the URL and that the server is up.",
                            retriable=True) from None
    if response.status_code < 400 or response.status_code == 409:
        return response
    code = response.status_code
    hints = {401: "the credentials were refused; check user name/password or token",
             403: "access denied for these credentials",
             404: "no DICOMweb service at this URL; check the base URL (e.g. http://host:8042/dicom-web)",
             413: "the request is too large for the server; send fewer instances per request",
             415: "the server does not accept this content type"}
    hint = hints.get(code, "the server failed; try again later" if code >= 500 else "the server refused it")
    body = response.text.strip().replace("\n", " ")[:300]
    raise DicomWebError(f"{endpoint.label} answered {method} {path} with HTTP {code}: {hint}."
                        + (f" It says: {body}" if body else ""), http_status=code, retriable=code >= 500)


def _caused_by(exc: BaseException | None, kind: type) -> bool:
    while exc is not None:
        if isinstance(exc, kind):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _multipart(parts: list[bytes]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    chunks = []
    for data in parts:
        chunks += [f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode(), data, b"\r\n"]
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f'multipart/related; type="application/dicom"; boundary={boundary}'


def _values(item: dict, tag: str) -> list:
    return (item.get(tag) or {}).get("Value") or []


def _reason(item: dict, tag: str) -> str:
    codes = _values(item, tag)
    return describe(int(codes[0]), "store") if codes else "no reason given"


def stow(endpoint: DicomWebEndpoint, sources: Iterable[str | os.PathLike | bytes | tuple], *, batch_size: int = 20,
         batch_bytes: int = files.LARGE_FILE_BYTES,
         on_progress: Callable[[int], None] | None = None) -> StowResult:
    """STOW-RS every source (file path, Part-10 bytes, or (path, header) with the header files.read_meta
    read, which the file must still match), `batch_size` instances per request and a request's body
    closed once it holds `batch_bytes` (a batch is built in memory: twenty 60 MB files must not cost
    2.4 GB; a file over LARGE_FILE_BYTES goes alone, streamed). A source that is not
    complete DICOM is a failure named by its path and is not sent. `on_progress(done)` is
    called after each request with the number of sources dealt with so far. An HTTP-level failure
    (DicomWebError) carries `.result`: what the requests before it stored."""
    result = StowResult()
    batch: list[tuple[str, bytes]] = []  # (SOP Instance UID, file bytes)
    held = done = 0  # held: the bytes in the batch
    try:
        with _client(endpoint) as client:
            for source in sources:
                done += 1
                source, known = source if isinstance(source, tuple) else (source, None)
                name, uid = files.source_name(source), None
                try:
                    info, data = _read(source, known)
                    uid = info.sop_instance_uid
                    result.sent[uid] = name
                    if data is None:  # a large file: proven where it lies, alone in its request, streamed
                        _stow_file(client, endpoint, source, info, result)
                    else:
                        batch.append((uid, data))
                        held += len(data)
                except InvalidDicomFile as exc:
                    result.failed.append((name, exc.message.removeprefix(f"{name}: ")))
                    result.sent.pop(uid, None)
                    continue
                if len(batch) >= batch_size or held >= batch_bytes or data is None:
                    if batch:
                        _stow_batch(client, endpoint, batch, result)
                        batch, held = [], 0
                    if on_progress:
                        on_progress(done)
            if batch:
                _stow_batch(client, endpoint, batch, result)
    except DicomWebError as exc:
        exc.result = result
        raise
    log.info("STOW-RS to %s: %d stored, %d with warnings, %d failed in %d requests", endpoint.label,
             len(result.stored), len(result.warnings), len(result.failed), result.requests)
    return result


def _read(source, known: files.DicomFileInfo | None) -> tuple[files.DicomFileInfo, bytes | None]:
    """The source's header and bytes, proven complete; bytes None for a large file, which _stow_file
    proves and streams instead of reading it whole."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return files.read_checked(source)
    info = known or files.read_meta(source)
    if info.size > files.LARGE_FILE_BYTES:
        return info, None
    return info, files.read_complete(source, info)


def _stow_file(client, endpoint: DicomWebEndpoint, path, info: files.DicomFileInfo, result: StowResult) -> None:
    """STOW-RS one large file as a one-part body read from the file piece by piece (Content-Length set:
    some servers, this portal among them, refuse chunked request bodies)."""
    boundary = uuid.uuid4().hex
    head = f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    with split.open_complete(path, info) as complete:
        def body():
            yield head
            yield from complete.chunks()
            yield tail
        _post(client, endpoint, body(), {
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
            "Content-Length": str(len(head) + info.size + len(tail))}, [info.sop_instance_uid], result)


def _stow_batch(client, endpoint: DicomWebEndpoint, batch: list[tuple[str, bytes]], result: StowResult) -> None:
    body, content_type = _multipart([data for _, data in batch])
    _post(client, endpoint, body, {"Content-Type": content_type}, [uid for uid, _ in batch], result)


def _post(client, endpoint: DicomWebEndpoint, body, headers: dict, uids: list[str], result: StowResult) -> None:
    """POST one STOW-RS request and sort its per-instance answer into `result`."""
    response = _request(client, endpoint, "POST", "studies", content=body,
                        headers={**headers, "Accept": "application/dicom+json"})
    result.requests += 1
    try:
        answer = response.json() if response.content else {}
    except ValueError:
        raise DicomWebError(f"{endpoint.label} answered STOW-RS with HTTP {response.status_code} but not with "
                            "DICOM JSON; cannot tell which instances were stored.", http_status=response.status_code,
                            retriable=True) from None
    if isinstance(answer, list):  # some servers wrap the one response dataset in a list
        answer = answer[0] if answer else {}
    answered = set()
    for item in _values(answer, REFERENCED_SOP_SEQUENCE):
        uid = str((_values(item, REFERENCED_SOP_INSTANCE_UID) or [""])[0])
        answered.add(uid)
        if _values(item, WARNING_REASON):
            result.warnings.append((uid, _reason(item, WARNING_REASON)))
        else:
            result.stored.append(uid)
    for item in _values(answer, FAILED_SOP_SEQUENCE):
        uid = str((_values(item, REFERENCED_SOP_INSTANCE_UID) or [""])[0])
        answered.add(uid)
        result.failed.append((uid, _reason(item, FAILURE_REASON)))
    for uid in uids:
        if uid not in answered:
            result.failed.append((uid, f"{endpoint.label} did not acknowledge this instance "
                                       f"(HTTP {response.status_code})"))


def qido(endpoint: DicomWebEndpoint, level: str, params: dict) -> list[dict]:
    """QIDO-RS search at `level` ("studies", "series" or "instances"); matches as DICOM JSON dicts.
    params are query keys (e.g. {"PatientID": "X", "StudyDate": "20200101-20201231", "includefield": ...})."""
    if level not in QIDO_LEVELS:
        raise ValueError(f"QIDO level must be one of {', '.join(QIDO_LEVELS)}, not {level!r}")
    with _client(endpoint) as client:
        response = _request(client, endpoint, "GET", level, params=params,
                            headers={"Accept": "application/dicom+json"})
    if response.status_code == 204 or not response.content:
        return []
    try:
        return response.json()
    except ValueError:
        raise DicomWebError(f"{endpoint.label} answered the QIDO-RS search with something other than DICOM JSON.",
                            http_status=response.status_code) from None
