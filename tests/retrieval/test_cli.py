"""`manage.py dicom …` — the command-line tools, against the real Orthanc."""
import io
import re
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from apps.retrieval.models import RetrievalJob
from apps.servers.models import DicomServer

pytestmark = pytest.mark.django_db(transaction=True)


def dicom(*args) -> str:
    out = io.StringIO()
    call_command("dicom", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_echo_and_query(orthanc_servers, orthanc_dataset):
    assert "C-ECHO A: OK" in dicom("echo", "--server", "a")
    patient = orthanc_dataset["studies"][0]["PatientID"]
    output = dicom("query", "--server", "A", "--patient-id", patient)
    expected = {s["StudyInstanceUID"] for s in orthanc_dataset["studies"] if s["PatientID"] == patient}
    assert set(re.findall(r"\b1\.2\.[0-9.]+", output)) >= expected
    assert output.strip().endswith(f"{len(expected)} studies")


def test_unknown_server_and_bad_date_are_clear_errors(orthanc_servers):
    with pytest.raises(CommandError, match=r"Unknown server 'NOPE' \(known: A, B\)"):
        dicom("echo", "--server", "NOPE")
    with pytest.raises(CommandError, match="StudyDate '2021-02-30' is not a real date"):
        dicom("query", "--server", "A", "--study-date", "2021-02-30")


def test_retrieve_one_study_into_an_output_dir(portal, orthanc, orthanc_dataset, orthanc_servers, tmp_path):
    study = orthanc_dataset["studies"][2]
    out = tmp_path / "out"
    output = dicom("retrieve", "--server", "A", "--study-uid", study["StudyInstanceUID"], "--output-dir", str(out))
    assert "1 of 1 rows retrieved (100.0%)" in output
    files = {p.stem for p in out.rglob("*.dcm")}
    assert files == orthanc.study_instances(study["StudyInstanceUID"])
    assert (out / "A" / f"{study['StudyDate']}_{study['PatientID']}_{study['Modality']}").is_dir()


def test_batch_over_a_folder_of_case_lists_makes_one_job_each_and_a_report(portal, orthanc, orthanc_dataset,
                                                                          orthanc_servers, tmp_path, settings):
    s0, s1 = orthanc_dataset["studies"][0], orthanc_dataset["studies"][1]
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "one.csv").write_text(f"{s0['PatientID']},{s0['StudyDate'][:4]}-{s0['StudyDate'][4:6]}-"
                                   f"{s0['StudyDate'][6:]},{s0['Modality']},\n")
    (lists / "two.csv").write_text(f"PatientID,StudyDate,Modality,Server\n"
                                   f"{s1['PatientID']},{s1['StudyDate'][:4]}-{s1['StudyDate'][4:6]}-"
                                   f"{s1['StudyDate'][6:]},{s1['Modality']},B\nNOBODY,2020-01-01,CT,B\n")
    output = dicom("batch", str(lists), "--server", "A", "--timeout", "60")
    assert RetrievalJob.objects.count() == 2
    assert "one.csv: 1 of 1 rows retrieved (100.0%)" in output
    assert "two.csv: 1 of 2 rows retrieved (50.0%), 1 failed" in output
    assert sorted(job.status for job in RetrievalJob.objects.all()) == ["partial", "succeeded"]
    report = Path(re.findall(r"Report: (\S+job\d+\.txt)", output)[-1]).read_text()
    assert "FAILED: 1" in report and "line 3" in report and "No study on B matches line 3" in report
    assert {job.timeout for job in RetrievalJob.objects.all()} == {60}
    assert len(list((settings.DOWNLOADS_DIR).rglob("*.dcm"))) == (
        len(orthanc.study_instances(s0["StudyInstanceUID"])) + len(orthanc.study_instances(s1["StudyInstanceUID"])))


def test_send_dir_stores_every_file_and_names_the_bad_one(db, empty_orthanc, tmp_path):
    from apps.dicom.demo.synthetic import write_dataset

    manifest = write_dataset(tmp_path / "src", patients=1, instances=3, modalities=("MR",))
    (tmp_path / "src" / "notes.txt").write_text("not DICOM")
    peer = empty_orthanc.peer()
    DicomServer.objects.create(name="SPARE", ae_title=peer.ae_title, host=peer.host, port=peer.port)
    err = io.StringIO()
    with pytest.raises(SystemExit):
        call_command("dicom", "send-dir", str(tmp_path / "src"), "--server", "SPARE", stdout=io.StringIO(), stderr=err)
    assert "notes.txt" in err.getvalue()
    assert len(empty_orthanc.instances()) == manifest["files"] == 3
