"""The one way instances are stored on a server (apps/servers/storing.py), by C-STORE and by STOW-RS
(Orthanc's DICOMweb plugin), into a real Orthanc: each file's outcome by its path, files that are not
complete DICOM named with their reason and never sent, the caller's association slot held while storing,
and an exchange that ends early raised with the server's name and what was done before it."""
import contextlib
import socket
import threading

import pytest

from apps.dicom import files
from apps.dicom.demo.synthetic import write_dataset
from apps.dicom.errors import ConnectionFailed, DicomError, DicomWebError
from apps.servers import storing
from apps.servers.models import DicomServer
from tests.fixtures_common import trust_url_host, unused_port

pytestmark = pytest.mark.django_db
METHODS = [storing.C_STORE, storing.STOW_RS]


@pytest.fixture
def sources(tmp_path):
    """Five good instances (two kinds of object), a file that is not DICOM and a truncated one."""
    write_dataset(tmp_path, patients=1, studies=1, series=1, instances=5, rows=32, cols=32,
                  modalities=("CT", "MR"), seed=31, id_prefix="SEAM")
    good = sorted(tmp_path.rglob("*.dcm"))
    junk, cut = tmp_path / "notes.txt", tmp_path / "cut.dcm"
    junk.write_text("not an image")
    cut.write_bytes(good[0].read_bytes()[:-40])
    return good, junk, cut


def uid(path):
    return files.read_meta(path).sop_instance_uid


@pytest.mark.parametrize("method", METHODS)
def test_every_file_has_its_outcome_and_only_complete_dicom_is_sent(server, empty_orthanc, sources, method):
    good, junk, cut = sources
    progress = []
    report = storing.store(server, [*good, junk, cut], method=method, stow_batch=2,
                           on_progress=lambda done, total: progress.append((done, total)))
    assert sorted(o.path for o in report.stored) == sorted(str(p) for p in good)
    assert {o.sop_instance_uid for o in report.stored} == {uid(p) for p in good} and report.warnings == []
    failed = dict(report.failed)
    assert set(failed) == {str(junk), str(cut)} and report.invalid == report.failed
    assert "truncated" in failed[str(cut)] and "DICOM" in failed[str(junk)]
    assert empty_orthanc.instances() == {uid(p) for p in good}, "nothing incomplete reached the server"
    assert progress[-1] == (7, 7)


@pytest.mark.parametrize("method", METHODS)
def test_files_with_their_headers_read_already_are_stored_alike(server, empty_orthanc, sources, method):
    good, _, _ = sources
    report = storing.store(server, [(p, files.read_meta(p)) for p in good], method=method)
    assert [o.path for o in report.stored] == [str(p) for p in good] and report.failed == []
    assert empty_orthanc.instances() == {uid(p) for p in good}


@pytest.mark.parametrize("method", METHODS)
def test_a_folder_is_walked_whichever_the_method(server, empty_orthanc, sources, tmp_path, method):
    good, junk, cut = sources
    report = storing.store(server, [tmp_path], method=method)
    assert sorted(o.path for o in report.stored) == sorted(str(p) for p in good)
    assert {str(junk), str(cut)} <= {path for path, _ in report.failed}  # the manifest is not DICOM either
    assert empty_orthanc.instances() == {uid(p) for p in good}


@pytest.mark.parametrize("method", METHODS)
def test_the_callers_slot_is_held_while_storing_and_released_after(server, sources, method):
    good, _, _ = sources
    held, seen = threading.Event(), []

    @contextlib.contextmanager
    def slot():
        held.set()
        try:
            yield
        finally:
            held.clear()

    storing.store(server, good, method=method, slot=slot(), stow_batch=2,
                  on_progress=lambda done, total: seen.append(held.is_set()))
    assert seen and all(seen) and not held.is_set()


def test_an_unreachable_server_is_an_error_naming_it_with_the_files_refused_before(db, sources):
    good, junk, _ = sources
    gone = DicomServer.objects.create(name="GONE", ae_title="GONE", host="127.0.0.1", port=unused_port(), retries=0)
    with pytest.raises(ConnectionFailed) as caught:
        storing.store(gone, [junk, *good], timeout=2)
    assert "GONE" in str(caught.value) and caught.value.retriable
    assert [path for path, _ in caught.value.report.failed] == [str(junk)]


def test_a_dicomweb_service_that_does_not_answer_is_an_error_naming_it(db, sources, settings):
    good, _, _ = sources
    listener = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    try:
        silent = DicomServer.objects.create(
            name="SILENT", ae_title="SILENT", host="127.0.0.1", port=104, retries=0,
            dicomweb_url=trust_url_host(settings, f"http://127.0.0.1:{listener.getsockname()[1]}/dicom-web"))
        with pytest.raises(DicomWebError) as caught:
            storing.store(silent, good, method=storing.STOW_RS, timeout=1)
    finally:
        listener.close()
    assert "SILENT" in str(caught.value) and "did not answer within 1 s" in str(caught.value)
    assert caught.value.report.stored == []


def test_stow_rs_to_a_server_without_a_dicomweb_url_says_so(db, sources):
    plain = DicomServer.objects.create(name="PLAIN", ae_title="PLAIN", host="127.0.0.1", port=104)
    with pytest.raises(DicomError, match="Server PLAIN has no DICOMweb URL"):
        storing.store(plain, sources[0], method=storing.STOW_RS)


def test_an_unknown_method_is_refused(server, sources):
    with pytest.raises(ValueError, match="unknown store method"):
        storing.store(server, sources[0], method="ftp")
