"""`manage.py dicom send-file/send-dir` with the old tool's ad-hoc flags, for a PACS not in the database."""
import io

import pydicom
import pytest
from django.core.management import call_command

from tests.sending.conftest import sop_uids, study_tree


def test_send_dir_with_ip_port_and_ae_titles(db, empty_orthanc, tmp_path):
    study_tree(tmp_path / "src", patients=1, instances=2)
    out = io.StringIO()
    call_command("dicom", "send-dir", "--dir", str(tmp_path / "src"), "--ip", "127.0.0.1",
                 "--port", str(empty_orthanc.dicom_port), "--pacs-ae-title", empty_orthanc.aet,
                 "--ae-title", "MY_APP", stdout=out)
    assert "sent 4 of 4 files" in out.getvalue()
    assert empty_orthanc.instances() == sop_uids(tmp_path / "src")
    calling = empty_orthanc.rest("GET", f"/instances/{empty_orthanc.rest('GET', '/instances').json()[0]}/metadata/"
                                        "RemoteAET").text
    assert calling == "MY_APP"


def test_send_file_to_a_wrong_pacs_ae_title_says_so(db, empty_orthanc, tmp_path):
    study_tree(tmp_path / "src", patients=1, instances=1)
    one = next((tmp_path / "src").rglob("*.dcm"))
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="rejected the association"):
        call_command("dicom", "send-file", "--file", str(one), "--port", str(empty_orthanc.dicom_port),
                     "--pacs-ae-title", "NOT_ORTHANC", stdout=io.StringIO())


def test_send_file_to_a_configured_server_is_a_send_job_run_here(db, empty_orthanc, tmp_path):
    from apps.audit.models import AuditEvent
    from apps.sending.models import SendJob
    from apps.servers.models import DicomServer

    study_tree(tmp_path / "src", patients=1, instances=1)
    one = next((tmp_path / "src").rglob("*.dcm"))
    peer = empty_orthanc.peer()
    DicomServer.objects.create(name="SPARE", ae_title=peer.ae_title, host=peer.host, port=peer.port)
    out = io.StringIO()
    call_command("dicom", "send-file", str(one), "--server", "SPARE", stdout=out)
    assert "sent 1 of 1 files" in out.getvalue()
    job = SendJob.objects.get()
    assert job.status == "succeeded" and job.progress()["sent"] == 1 and job.source_path == str(one)
    assert [s.name for s in job.servers.all()] == ["SPARE"]
    assert AuditEvent.objects.filter(action="job.started", target=f"sending.SendJob:{job.pk}").exists()
    assert empty_orthanc.instances() == {pydicom.dcmread(one, stop_before_pixels=True).SOPInstanceUID}
