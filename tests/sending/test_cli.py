"""`manage.py dicom send-file/send-dir` with the old tool's ad-hoc flags, for a PACS not in the database."""
import io

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
