"""Files filed as the apps file them, cheaply: one small generated instance copied under new UIDs into
the downloads layout (retrieval's study_folder), catalogued by the call retrieval makes, with a retrieval
job and item recording each study folder as a real row does."""
import itertools
from pathlib import Path

import pydicom
import pytest

from apps.catalog.filing import catalog_files
from apps.dicom.demo.synthetic import write_dataset
from apps.retrieval.layout import study_folder

_UIDS = itertools.count()  # every generated UID differs, across calls too


@pytest.fixture(scope="session")
def template(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("template")
    write_dataset(folder, patients=1, studies=1, series=1, instances=1, rows=4, cols=4, modalities=("CT",))
    return next(folder.rglob("*.dcm"))


def file_like_retrieval(template: Path, downloads: Path, user, *, patients=2, studies=1, series=1, instances=3,
                        server: str = "LK"):
    """patients x studies x series x instances files filed under `downloads` as retrieval rows file them."""
    from apps.retrieval.models import RetrievalItem, RetrievalJob
    from apps.servers.models import DicomServer

    dicom_server, _ = DicomServer.objects.get_or_create(name=server, defaults={"ae_title": server, "host": "127.0.0.1",
                                                                                "port": 1})
    job = RetrievalJob.objects.create(created_by=user, source_name="cases.csv")
    ds = pydicom.dcmread(template, stop_before_pixels=True)
    data = template.read_bytes()
    counter = _UIDS

    def same_length(uid: str) -> str:  # a fresh UID of the template's length: the bytes are swapped in place
        return f"{uid[:len(uid) - 9]}9{next(counter):08d}"

    line = 1
    for p in range(patients):
        patient = f"{ds.PatientID[:-5]}{p:05d}"
        for s in range(studies):
            study, date = same_length(ds.StudyInstanceUID), f"2024{1 + s % 12:02d}{1 + p % 28:02d}"
            folder = study_folder(downloads, server, date, patient, ds.Modality)
            folder.mkdir(parents=True, exist_ok=True)
            paths = []
            for se in range(series):
                series_uid = same_length(ds.SeriesInstanceUID)
                for i in range(instances):
                    sop = same_length(ds.SOPInstanceUID)
                    paths.append(folder / f"{sop}.dcm")
                    paths[-1].write_bytes(
                        data.replace(ds.SOPInstanceUID.encode(), sop.encode())
                        .replace(ds.SeriesInstanceUID.encode(), series_uid.encode())
                        .replace(ds.StudyInstanceUID.encode(), study.encode())
                        .replace(ds.PatientID.encode(), patient.encode())
                        .replace(ds.StudyDate.encode(), date.encode()))
            line += 1
            RetrievalItem.objects.create(job=job, line=line, patient_id=patient, dicom_server=dicom_server,
                                         server_name=server, status="succeeded",
                                         result={"studies": [{"StudyInstanceUID": study,
                                                              "folder": str(folder), "received": len(paths)}]})
            catalog_files(paths, source="retrieved", job=job)
    return job


def rows_as_tuples():
    from apps.catalog.models import Instance

    fields = [f.attname for f in Instance._meta.concrete_fields if f.attname not in ("id", "filed_at")]
    return sorted(Instance.objects.values_list(*fields))


@pytest.fixture
def generate(tmp_path):
    def make(name="gen", **options):
        options = {"patients": 2, "studies": 1, "series": 1, "instances": 3, "rows": 8, "cols": 8, **options}
        write_dataset(tmp_path / name, **options)
        return tmp_path / name
    return make
