"""Files filed as the apps file them, cheaply: small generated studies moved into the downloads layout
by retrieval's own file_into and catalogued by the call retrieval makes, with a retrieval job and item
recording the folders as a real row does."""
from pathlib import Path

import pydicom
import pytest

from apps.catalog.filing import catalog_files
from apps.dicom.demo.synthetic import write_dataset
from apps.retrieval.layout import file_into, study_folder


def file_like_retrieval(generated: Path, downloads: Path, user, server: str = "LK"):
    """Every study under `generated` filed into `downloads` as a retrieval row files it; the job."""
    from apps.retrieval.models import RetrievalItem, RetrievalJob
    from apps.servers.models import DicomServer

    dicom_server, _ = DicomServer.objects.get_or_create(name=server, defaults={"ae_title": server, "host": "127.0.0.1",
                                                                                "port": 1})
    job = RetrievalJob.objects.create(created_by=user, source_name="cases.csv")
    studies: dict[str, list[Path]] = {}
    for path in sorted(generated.rglob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        renamed = path.with_name(f"{ds.SOPInstanceUID}.dcm")
        path.rename(renamed)
        studies.setdefault((ds.StudyInstanceUID, ds.StudyDate, ds.PatientID, ds.Modality), []).append(renamed)
    for line, ((uid, date, patient, modality), paths) in enumerate(sorted(studies.items()), 2):
        folder = study_folder(downloads, server, date, patient, modality)
        filed = file_into(folder, paths)
        RetrievalItem.objects.create(job=job, line=line, patient_id=patient, dicom_server=dicom_server,
                                     server_name=server, status="succeeded",
                                     result={"studies": [{"StudyInstanceUID": uid, "folder": str(folder),
                                                          "received": len(paths)}]})
        catalog_files(filed.paths, source="retrieved", job=job)
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
