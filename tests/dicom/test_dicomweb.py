"""STOW-RS and QIDO-RS against Orthanc's DICOMweb plugin, and the answers a DICOMweb server may give
(served by a small real HTTP server in a thread)."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pydicom
import pytest

from apps.dicom import dicomweb
from apps.dicom.demo.synthetic import write_dataset
from apps.dicom.errors import DicomWebError
from apps.dicom.peers import DicomWebEndpoint
from tests.fixtures_common import unused_port


@pytest.fixture(scope="module")
def mr_study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stow")
    manifest = write_dataset(folder, patients=1, studies=1, series=2, instances=5, modalities=("MR",), seed=31,
                             id_prefix="WEB")
    return manifest, sorted(folder.rglob("*.dcm"))


def uid_of(path):
    return pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID


def test_stow_stores_every_instance_several_per_request_and_qido_finds_them(empty_orthanc, mr_study, tmp_path):
    manifest, paths = mr_study
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"\0" * 300)
    result = dicomweb.stow(empty_orthanc.dicomweb(), [*paths[:9], junk, paths[9].read_bytes()], batch_size=4)
    assert sorted(result.stored) == sorted(uid_of(p) for p in paths)
    assert result.requests == 3  # 10 instances, 4 per request; the junk file is never sent
    assert result.failed == [(str(junk), "not a DICOM file (no 'DICM' marker after the 128-byte preamble)")]
    assert empty_orthanc.instances() == {uid_of(p) for p in paths}

    study = manifest["studies"][0]
    studies = dicomweb.qido(empty_orthanc.dicomweb(), "studies", {"PatientID": study["PatientID"]})
    assert [s["0020000D"]["Value"][0] for s in studies] == [study["StudyInstanceUID"]]
    instances = dicomweb.qido(empty_orthanc.dicomweb(), "instances", {"StudyInstanceUID": study["StudyInstanceUID"]})
    assert {i["00080018"]["Value"][0] for i in instances} == {uid_of(p) for p in paths}
    assert dicomweb.qido(empty_orthanc.dicomweb(), "studies", {"PatientID": "NOBODY"}) == []


def test_stow_closes_a_request_once_its_batch_holds_batch_bytes(empty_orthanc, mr_study):
    """A batch is built in memory, so its bytes are capped as well as its count: files of a size just
    under the streaming limit must not pile up twenty to a request."""
    _, paths = mr_study
    three_files = sum(p.stat().st_size for p in paths[:3])
    result = dicomweb.stow(empty_orthanc.dicomweb(), paths, batch_size=20, batch_bytes=three_files)
    assert sorted(result.stored) == sorted(uid_of(p) for p in paths)
    assert result.requests == 4  # 10 files of one size: 3 + 3 + 3 + 1, though 20 were allowed per request


def test_a_wrong_base_url_is_an_error_in_words(orthanc):
    endpoint = orthanc.dicomweb(base_url=f"http://127.0.0.1:{orthanc.http_port}/no-dicomweb-here")
    with pytest.raises(DicomWebError) as caught:
        dicomweb.qido(endpoint, "studies", {})
    assert caught.value.http_status == 404 and not caught.value.retriable and "base URL" in str(caught.value)


def test_an_unreachable_server_is_retriable():
    endpoint = DicomWebEndpoint(base_url=f"http://127.0.0.1:{unused_port()}/dicom-web", timeout=3)
    with pytest.raises(DicomWebError) as caught:
        dicomweb.qido(endpoint, "studies", {})
    assert caught.value.retriable and caught.value.http_status is None


class FakeArchive(BaseHTTPRequestHandler):
    """Answers with whatever the test put in `server.answer` and records the requests it got."""

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append((self.path, dict(self.headers), body))
        status, payload = self.server.answer(body)
        data = json.dumps(payload).encode() if payload is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST

    def log_message(self, *args):
        pass


@pytest.fixture
def archive():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeArchive)
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def sop(uid, **extra):
    return {"00081155": {"vr": "UI", "Value": [uid]}, **extra}


def test_stow_sorts_stored_warned_and_failed_and_sends_bearer_auth(archive, mr_study):
    _, paths = mr_study
    uids = [uid_of(p) for p in paths[:4]]
    archive.answer = lambda body: (202, {
        "00081199": {"vr": "SQ", "Value": [sop(uids[0]), sop(uids[1], **{"00081196": {"vr": "US", "Value": [0xB000]}})]},
        "00081198": {"vr": "SQ", "Value": [sop(uids[2], **{"00081197": {"vr": "US", "Value": [0xA700]}})]}})
    endpoint = DicomWebEndpoint(base_url=f"http://127.0.0.1:{archive.server_port}/web/", auth="bearer", token="s3cret")
    result = dicomweb.stow(endpoint, paths[:4])
    assert result.stored == [uids[0]]
    assert result.warnings == [(uids[1], "0xB000 (Coercion of Data Elements)")]
    assert result.failed[0][0] == uids[2] and "0xA700" in result.failed[0][1]
    assert result.failed[1][0] == uids[3] and "did not acknowledge" in result.failed[1][1]
    path, headers, body = archive.seen[0]
    assert path == "/web/studies" and headers["Authorization"] == "Bearer s3cret"
    assert headers["Content-Type"].startswith('multipart/related; type="application/dicom"; boundary=')
    boundary = headers["Content-Type"].split("boundary=")[1]
    assert body.count(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()) == 4
    assert paths[0].read_bytes() in body  # the file's bytes, untouched


def test_basic_auth_and_http_errors(archive, mr_study):
    _, paths = mr_study
    endpoint = DicomWebEndpoint(base_url=f"http://127.0.0.1:{archive.server_port}", auth="basic", username="u",
                                password="p")
    archive.answer = lambda body: (503, {"message": "busy"})
    with pytest.raises(DicomWebError) as caught:
        dicomweb.stow(endpoint, paths[:1])
    assert caught.value.http_status == 503 and caught.value.retriable
    assert archive.seen[0][1]["Authorization"] == "Basic dTpw"
    archive.answer = lambda body: (401, None)
    with pytest.raises(DicomWebError) as caught:
        dicomweb.qido(endpoint, "studies", {})
    assert caught.value.http_status == 401 and not caught.value.retriable and "credentials" in str(caught.value)


def test_all_refused_409_is_a_result_not_an_exception(archive, mr_study):
    _, paths = mr_study
    uid = uid_of(paths[0])
    archive.answer = lambda body: (409, {"00081198": {"vr": "SQ", "Value": [sop(uid, **{"00081197": {"vr": "US", "Value": [0x0122]}})]}})
    result = dicomweb.stow(DicomWebEndpoint(base_url=f"http://127.0.0.1:{archive.server_port}"), paths[:1])
    assert result.stored == [] and result.failed[0][0] == uid and "SOP Class Not Supported" in result.failed[0][1]
