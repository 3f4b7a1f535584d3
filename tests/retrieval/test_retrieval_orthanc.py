"""Batch retrieval against a real Orthanc: C-MOVE into the portal's receiver and C-GET, the exact
files per row, partial jobs with every failure's reason, shortfalls, timeouts, and re-runs."""
import errno
from pathlib import Path

import pydicom
import pytest

from apps.audit.models import AuditEvent
from apps.dicom import staged
from apps.jobs import runner
from apps.retrieval import intake
from apps.retrieval.models import RetrievalJob
from apps.retrieval.report import build_report
from apps.servers.models import DicomServer

pytestmark = pytest.mark.django_db(transaction=True)


def run_inline(job):
    for item in job.items.all():
        runner.run_item(item._meta.label, item.pk)
    job.refresh_from_db()
    return job


def files_under(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in folder.rglob("*.dcm")}


@pytest.fixture
def silent_server(db, silent_listener):
    """A 'PACS' that accepts TCP connections and never says a word."""
    port, _ = silent_listener
    return DicomServer.objects.create(name="SILENT", ae_title="SILENT", host="127.0.0.1", port=port,
                                      query_timeout=2, download_timeout=2, retries=0)


def test_a_mixed_case_list_ends_partial_with_exact_files_and_reasons(portal, orthanc, orthanc_dataset,
                                                                     orthanc_servers, silent_server, settings, user):
    studies = orthanc_dataset["studies"]
    s0, s1, s2, s3 = studies[0], studies[1], studies[2], studies[3]

    def day(s):
        return f"{s['StudyDate'][:4]}-{s['StudyDate'][4:6]}-{s['StudyDate'][6:]}"

    csv_text = "\n".join([
        "\ufeffPatientID,StudyDate,Modality,Server",
        "# good rows over two servers, C-MOVE (A) and C-GET (B)",
        f"{s0['PatientID']},{day(s0)},{s0['Modality']},A",
        f"{s1['PatientID']},{day(s1)},{s1['Modality']},B",
        f"{s2['PatientID']}, {day(s2)} , ,a",                       # no modality, spaces, lower-case server
        f"{s3['PatientID']},{day(s3)}..{day(s3)},{s3['Modality']},B",  # a date range
        f"{s0['PatientID']},1999-01-01,CT,A",                         # matches nothing
        f"{s1['PatientID']},{day(s1)},{s1['Modality']},SILENT",       # never answers: timed out
        f"{s1['PatientID']},2021-02-30,CT,A",                         # impossible date
        f"{s1['PatientID']},{day(s1)},CT",                            # wrong column count
        f"{s2['PatientID']},{day(s2)},MR,NOWHERE",                    # unknown server
        "",
    ])
    case_list = intake.read_case_list(csv_text.encode(), user=None)
    assert [e.line for e in case_list.errors] == [9, 10, 11]
    job = run_inline(RetrievalJob.from_case_list(case_list, user=user, source_name="cases.csv", start=False))

    assert job.status == "partial"
    items = {item.line: item for item in job.items.all()}
    for line, study in ((3, s0), (4, s1), (5, s2), (6, s3)):
        item = items[line]
        assert item.status == "succeeded", (line, item.error)
        expected_uids = orthanc.study_instances(study["StudyInstanceUID"])
        folder = settings.DOWNLOADS_DIR / item.path
        assert set(files_under(folder)) == expected_uids
        assert item.expected == item.instances == len(expected_uids)
        server = item.server_name
        modality = study["Modality"] if line != 5 else study["Modality"]
        assert folder == settings.DOWNLOADS_DIR / server / f"{study['StudyDate']}_{study['PatientID']}_{modality}"
    assert items[7].status == "failed" and "No study on A matches line 7" in items[7].error
    assert items[8].status == "timed_out" and "SILENT" in items[8].error

    report = build_report(job)
    assert report["summary"] == {"rows": 9, "succeeded": 4, "failed": 1, "timed_out": 1, "canceled": 0,
                                 "bad_rows": 3, "success_rate": 44.4}
    assert [r["line"] for r in report["failed"]] == [7]
    assert [r["line"] for r in report["timed_out"]] == [8]
    reasons = {r["line"]: r["reason"] for r in report["bad_rows"]}
    assert "not a real date" in reasons[9] and "columns" in reasons[10] and "unknown server 'NOWHERE'" in reasons[11]
    # the audit trail says who retrieved which studies from which server
    events = AuditEvent.objects.filter(action="study.retrieved").order_by("details__line")
    assert [(e.actor, e.target, e.details["line"], e.details["studies"]) for e in events] == [
        (user, "server:A", 3, [s0["StudyInstanceUID"]]), (user, "server:B", 4, [s1["StudyInstanceUID"]]),
        (user, "server:A", 5, [s2["StudyInstanceUID"]]), (user, "server:B", 6, [s3["StudyInstanceUID"]])]
    # every file is exactly what Orthanc holds for its study, byte-for-byte as received
    some_file = next(iter(files_under(settings.DOWNLOADS_DIR / items[3].path).values()))
    assert pydicom.dcmread(some_file).StudyInstanceUID == s0["StudyInstanceUID"]


def test_a_receiver_that_loses_instances_makes_the_row_fail_with_the_shortfall(portal, orthanc, orthanc_dataset,
                                                                                orthanc_servers):
    portal.drop_every = 2
    study = orthanc_dataset["studies"][0]
    expected = len(orthanc.study_instances(study["StudyInstanceUID"]))
    text = intake.rows_to_csv([{"StudyInstanceUID": study["StudyInstanceUID"], "Server": "A"}])
    job = run_inline(RetrievalJob.from_case_list(intake.read_case_list(text, user=None), start=False))
    item = job.items.get()
    assert job.status == "failed" and item.status == "failed"
    assert f"received {expected - expected // 2} of {expected} instances" in item.error
    assert item.instances == expected - expected // 2


def test_a_disk_filling_up_mid_move_fails_the_row_naming_it_files_nothing_and_a_retry_gets_it_all(
        portal, orthanc, orthanc_dataset, orthanc_servers, settings, monkeypatch):
    """The receiver writes a move's instances after answering them; when the disk fails after that
    answer, the row must say so and keep nothing of the study, never look complete."""
    study = orthanc_dataset["studies"][0]
    expected = orthanc.study_instances(study["StudyInstanceUID"])
    real_write, writes = staged.write_all, []

    def disk_full_after_two(fd, data):
        writes.append(fd)
        if len(writes) > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_write(fd, data)

    monkeypatch.setattr(staged, "write_all", disk_full_after_two)
    text = intake.rows_to_csv([{"StudyInstanceUID": study["StudyInstanceUID"], "Server": "A"}])
    job = run_inline(RetrievalJob.from_case_list(intake.read_case_list(text, user=None), start=False))
    item = job.items.get()
    assert item.status == "failed"
    assert "The receiver could not write instances of study" in item.error
    assert "No space left on device" in item.error and "nothing of it was filed" in item.error
    assert not list(settings.DOWNLOADS_DIR.rglob("*.dcm")) and not list(settings.STAGING_DIR.rglob("*.dcm"))
    monkeypatch.setattr(staged, "write_all", real_write)  # space freed
    job.retry_failed()
    job = run_inline(job)
    assert job.items.get().status == "succeeded"
    assert set(files_under(settings.DOWNLOADS_DIR)) == expected


def test_rerunning_a_job_does_not_duplicate_files(portal, orthanc, orthanc_dataset, orthanc_servers, settings):
    study = orthanc_dataset["studies"][1]
    text = intake.rows_to_csv([{"StudyInstanceUID": study["StudyInstanceUID"], "Server": "A"},
                               {"StudyInstanceUID": study["StudyInstanceUID"], "Server": "B"}])
    job = run_inline(RetrievalJob.from_case_list(intake.read_case_list(text, user=None), start=False))
    assert job.status == "succeeded"
    before = sorted(p.relative_to(settings.DOWNLOADS_DIR) for p in settings.DOWNLOADS_DIR.rglob("*.dcm"))
    job.items.update(status="failed")
    job.retry_failed()
    job = run_inline(job)
    after = sorted(p.relative_to(settings.DOWNLOADS_DIR) for p in settings.DOWNLOADS_DIR.rglob("*.dcm"))
    assert job.status == "succeeded" and after == before
    assert len(before) == 2 * len(orthanc.study_instances(study["StudyInstanceUID"]))
