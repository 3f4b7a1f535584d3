"""The catalog as the apps write it: a real C-GET retrieval from Orthanc catalogues what it filed, a
received upload and STOW'd files are owned by their account, delivery's clear takes rows away, and
`catalog rebuild` gives back the rows the filing wrote (2,000 files), idempotently."""
import os
from datetime import timedelta
from pathlib import Path

import pydicom
import pytest
from django.core.management import call_command
from django.utils import timezone

from apps.catalog.models import Instance
from apps.catalog.rebuild import rebuild
from apps.delivery.deliver import clear_files
from apps.jobs import runner
from apps.retrieval import intake
from apps.retrieval.models import RetrievalJob
from apps.servers.models import DicomServer
from tests.catalog.conftest import file_like_retrieval, rows_as_tuples
from tests.fixtures_common import own_data_folders

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_c_get_retrieval_catalogues_every_file_it_filed(orthanc, orthanc_dataset, settings, tmp_path, user):
    own_data_folders(settings, tmp_path)
    peer = orthanc.peer()
    DicomServer.objects.create(name="B", retrieve_method="c-get", ae_title=peer.ae_title, host=peer.host,
                               port=peer.port, retries=0)
    study = orthanc_dataset["studies"][0]
    day = f"{study['StudyDate'][:4]}-{study['StudyDate'][4:6]}-{study['StudyDate'][6:]}"
    case_list = intake.read_case_list(f"{study['PatientID']},{day},{study['Modality']},B\n".encode(), user=None)
    job = RetrievalJob.from_case_list(case_list, user=user, source_name="cases.csv", start=False)
    for item in job.items.all():
        runner.run_item(item._meta.label, item.pk)
    item = job.items.get()
    assert item.status == "succeeded", item.error
    files = sorted((settings.DOWNLOADS_DIR / item.path).glob("*.dcm"))
    assert len(files) == item.instances == 5
    rows = {row.path: row for row in Instance.objects.all()}
    assert sorted(rows) == [str(p.resolve()) for p in files]
    for path in files:
        row, ds = rows[str(path.resolve())], pydicom.dcmread(path, stop_before_pixels=True)
        assert (row.sop_instance_uid, row.study_instance_uid, row.series_instance_uid) == (
            ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID)
        assert (row.patient_id, row.study_date, row.modality) == (study["PatientID"], study["StudyDate"],
                                                                    study["Modality"])
        assert row.size == path.stat().st_size and row.transfer_syntax_uid == ds.file_meta.TransferSyntaxUID
        assert (row.source, row.job_app, row.job_id, row.owner_id) == ("retrieved", "retrieval.retrievaljob",
                                                                       str(job.pk), user.pk)
    before = rows_as_tuples()
    Instance.objects.all().delete()
    rebuild()
    assert rows_as_tuples() == before


def test_rebuild_of_2000_files_gives_the_rows_the_filing_wrote(template, settings, tmp_path, user, capsys):
    settings.DOWNLOADS_DIR = tmp_path / "downloads"
    file_like_retrieval(template, settings.DOWNLOADS_DIR, user, patients=20, studies=2, series=2, instances=25)
    filed = rows_as_tuples()
    assert len(filed) == 2000 and Instance.objects.values("sop_instance_uid").distinct().count() == 2000
    assert Instance.objects.values("study_instance_uid").distinct().count() == 40
    Instance.objects.all().delete()
    call_command("catalog", "rebuild")
    assert rows_as_tuples() == filed
    assert "2000/2000 files" in capsys.readouterr().err  # the progress bar
    assert rebuild().removed == 0 and rows_as_tuples() == filed  # idempotent
    gone = Path(filed[0][0])
    gone.unlink()
    assert rebuild().removed == 1 and len(rows_as_tuples()) == 1999


def test_a_received_upload_is_catalogued_for_its_account_and_cleared_files_leave(generate, settings, tmp_path,
                                                                               user, django_user_model):
    from apps.delivery.models import Upload

    settings.DOWNLOADS_DIR, settings.UPLOADS_DIR = tmp_path / "downloads", tmp_path / "uploads"
    settings.UPLOADS_DIR.mkdir()
    source = next(generate().rglob("*.dcm"))
    upload = Upload.objects.create(created_by=user, filename="case/one.dcm", length=source.stat().st_size,
                                   expires_at=timezone.now() + timedelta(hours=1))
    upload.data_path.write_bytes(source.read_bytes())
    upload.settle()
    row = Instance.objects.get()
    assert row.path == str((settings.DOWNLOADS_DIR / "received" / "tech" / "case" / "one.dcm").resolve())
    assert (row.source, row.owner_id, row.job_app, row.job_id) == ("received", user.pk, "delivery.upload",
                                                                   str(upload.pk))
    before = rows_as_tuples()
    rebuild()
    assert rows_as_tuples() == before  # the upload's id is kept: the folder cannot tell it

    clear_files([Path(row.path)], settings.DOWNLOADS_DIR / "received")
    assert not os.path.exists(row.path) and not Instance.objects.exists()


def test_delivery_clear_of_retrieved_files_removes_their_rows(template, settings, tmp_path, user):
    settings.DOWNLOADS_DIR = tmp_path / "downloads"
    file_like_retrieval(template, settings.DOWNLOADS_DIR, user)
    paths = [Path(p) for p in Instance.objects.values_list("path", flat=True)]
    assert len(paths) == 6
    clear_files(paths[:3], settings.DOWNLOADS_DIR)
    assert sorted(Instance.objects.values_list("path", flat=True)) == sorted(map(str, paths[3:]))


def test_retention_removing_a_delivered_case_folder_takes_its_rows(template, settings, tmp_path, user):
    from apps.core.retention.candidate import Candidate
    from apps.core.retention.files import DeliveredDownloads

    settings.DOWNLOADS_DIR = tmp_path / "downloads"
    file_like_retrieval(template, settings.DOWNLOADS_DIR, user, patients=2)
    folders = sorted({Path(p).parent for p in Instance.objects.values_list("path", flat=True)})
    assert len(folders) == 2
    DeliveredDownloads().remove(Candidate("delivered-downloads", str(folders[0]), "a case folder", 40.0))
    assert not folders[0].exists()
    assert sorted({str(Path(p).parent) for p in Instance.objects.values_list("path", flat=True)}) == [str(folders[1])]


def test_forgetting_a_folder_removes_the_rows_under_it_only_through_the_index(tmp_path):
    """A photo upload's or an expired job's folder removed whole: the rows under it go, its neighbours whose
    names only start alike stay (SQLite's LIKE, case-blind, took "U1" too); on SQLite the delete is a range on the
    path index, not a scan of every row."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from apps.catalog.filing import forget_under

    folder = tmp_path / "photos" / "u1"
    under = [folder / "a.dcm", folder / "s" / "b.dcm", folder / "0" / "c.dcm"]
    beside = [tmp_path / "photos" / "u1.dcm", tmp_path / "photos" / "u10" / "d.dcm", tmp_path / "photos" / "u1-x" / "e.dcm",
              tmp_path / "photos" / "u1 " / "f.dcm", tmp_path / "photos" / "U1" / "g.dcm", tmp_path / "photos" / "u0" / "h.dcm"]
    for n, path in enumerate(under + beside):
        Instance.objects.create(path=str(path), source="photo", study_instance_uid="1.2", series_instance_uid="1.3",
                                sop_instance_uid=f"1.4.{n}", sop_class_uid="1.2.840.10008.5.1.4.1.1.7")
    with CaptureQueriesContext(connection) as queries:
        assert forget_under(folder) == 3
    assert sorted(Instance.objects.values_list("path", flat=True)) == sorted(map(str, beside))
    if connection.vendor == "sqlite":
        (finding,) = [q["sql"] for q in queries.captured_queries if q["sql"].startswith(("SELECT", "DELETE"))]
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN QUERY PLAN " + finding)
            plan = " ".join(str(row[-1]) for row in cursor.fetchall())
        assert "SEARCH" in plan and "INDEX" in plan and "SCAN" not in plan, plan
