"""A PACS that matches loosely never makes a row fetch what it did not ask for: every study the C-FIND answers
is checked against the row (PatientID equal, date within the range, modality among ModalitiesInStudy), and a
study that does not match is skipped, never moved, and named in the row's error (the row fails, so a user
looks at it; the studies it asked for are kept). Against a real PACS peer (the demo PACS with
its matching switched off at study level) and the real receiver process, by C-MOVE and by C-GET."""
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from apps.dicom.demo.qrscp import DemoPACS
from apps.dicom.demo.synthetic import write_dataset
from apps.retrieval import intake
from apps.retrieval.models import MoveKey, RetrievalJob
from apps.servers.models import DicomServer
from tests.receiver_process import receiver_process
from tests.retrieval.test_integrity import PORTAL_AE, run, staged_left

pytestmark = pytest.mark.django_db(transaction=True)
IGNORED_KEYS = ("PatientID", "StudyDate", "ModalitiesInStudy")


class LoosePACS(DemoPACS):
    """Answers a study-level C-FIND with every study it holds, whatever PatientID, StudyDate and
    ModalitiesInStudy asked for (as some PACS do), and notes the study of every C-MOVE and C-GET."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.retrieved: list[str] = []

    def add_modality(self, name: str, aet: str, port: int, host: str = "127.0.0.1") -> None:
        self.add_destination(aet, host, port)  # what receiver_process declares on an Orthanc

    def _select(self, identifier: Dataset, sop_class: str, *, need_unique_key: bool):
        if need_unique_key:  # a retrieve: matched as asked, and noted
            self.retrieved.append(str(identifier.get("StudyInstanceUID", "")))
        elif str(identifier.get("QueryRetrieveLevel", "")).upper() == "STUDY":
            identifier = pydicom.Dataset(identifier)
            for keyword in IGNORED_KEYS:
                if keyword in identifier:
                    setattr(identifier, keyword, "")  # empty: matches every value
        return super()._select(identifier, sop_class, need_unique_key=need_unique_key)


@pytest.fixture
def loose_pacs(tmp_path):
    # Two patients, each a CT study and an MR study on consecutive days from 2024-03-01.
    manifest = write_dataset(tmp_path / "pacs", patients=2, studies=2, instances=3, modalities=("CT", "MR"),
                             id_prefix="LOOSE", first_date="2024-03-01")
    with LoosePACS(tmp_path / "pacs", ae_title="LOOSEPACS") as pacs:
        pacs.studies = {(s["PatientID"], s["Modality"]): s for s in manifest["studies"]}
        yield pacs


@pytest.fixture
def receiver(settings, tmp_path, loose_pacs):
    with receiver_process(settings, tmp_path, loose_pacs, PORTAL_AE) as port:
        yield port


def filed_studies(settings) -> set[str]:
    return {str(pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID)
            for p in Path(settings.DOWNLOADS_DIR).rglob("*.dcm")}


@pytest.mark.parametrize("method", ["c-move", "c-get"])
def test_studies_the_row_did_not_ask_for_are_skipped_named_and_never_retrieved(loose_pacs, receiver, settings,
                                                                                  method):
    DicomServer.objects.create(name="LOOSE", ae_title="LOOSEPACS", host="127.0.0.1", port=loose_pacs.port,
                               retries=0, retrieve_method=method)
    studies = loose_pacs.studies
    ct, mr = studies[("LOOSE00001", "CT")], studies[("LOOSE00001", "MR")]  # dated 2024-03-01 and 03-02
    text = ("PatientID,StudyDate,Modality,Server\n"
            "LOOSE00001,2024-03-01..2024-03-02,CT,LOOSE\n"  # the MR study is in range, not of the modality
            "LOOSE00001,2024-03-02,MR,LOOSE\n")  # the CT study is of the patient, not of the day
    (read,) = intake.read_case_lists([("cases.csv", text)], user=None)
    job = run(RetrievalJob.from_case_list(read.case_list, source_name="cases.csv", start=False))

    first, second = job.items.order_by("line")
    assert (first.status, second.status) == ("failed", "failed")
    for row in (first, second):
        assert row.error.startswith(f"Line {row.line}, LOOSE: the PACS returned a study") and row.error.endswith(
            "it was skipped, not retrieved. Files of the requested studies that arrived were kept."), row.error
        assert row.error.count("it was skipped, not retrieved") == 3 and row.instances == 3 == row.expected
    skipped = {row.line: {s["StudyInstanceUID"]: s["reason"] for s in row.result["skipped"]} for row in (first, second)}
    other_patient = {s["StudyInstanceUID"] for (pid, _), s in studies.items() if pid == "LOOSE00002"}
    assert skipped[first.line] == {mr["StudyInstanceUID"]: "the PACS returned a study without the row's modality",
                                   **{uid: "the PACS returned a study of another patient" for uid in other_patient}}
    assert skipped[second.line] == {ct["StudyInstanceUID"]: "the PACS returned a study dated outside the row's "
                                                            "StudyDate",
                                    **{uid: "the PACS returned a study of another patient" for uid in other_patient}}
    # Only what the rows asked for was retrieved from the PACS and filed; the other patient's never left it.
    assert sorted(loose_pacs.retrieved) == sorted([ct["StudyInstanceUID"], mr["StudyInstanceUID"]])
    assert filed_studies(settings) == {ct["StudyInstanceUID"], mr["StudyInstanceUID"]}
    assert staged_left(settings) == [] and not MoveKey.objects.exists()
