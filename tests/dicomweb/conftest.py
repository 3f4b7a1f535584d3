"""Two accounts' instances on disk and in the catalog: alice's (two patients, CT and MR, two series each)
and bob's (one patient). Files are generated once per module; the rows are written per test (the live
server's tests flush the database)."""
from pathlib import Path

import pytest

from apps.dicom.demo.synthetic import write_dataset


@pytest.fixture(scope="module")
def study_files(tmp_path_factory):
    downloads = tmp_path_factory.mktemp("dicomweb") / "downloads"
    alice = write_dataset(downloads / "LK" / "alice", patients=2, studies=1, series=2, instances=3, seed=11,
                          id_prefix="AAA", modalities=("CT", "MR"), first_date="2022-01-10")
    bob = write_dataset(downloads / "LK" / "bob", patients=1, studies=1, series=1, instances=2, seed=12,
                        id_prefix="BBB", modalities=("CT",), first_date="2023-05-01")
    return downloads, alice, bob


@pytest.fixture
def catalogued(study_files, settings, django_user_model):
    """alice, bob and viewer (holds "view all jobs"), each with an API token; the files catalogued."""
    from django.contrib.auth.models import Permission
    from rest_framework.authtoken.models import Token

    from apps.catalog.filing import catalog_files

    downloads, alice_data, bob_data = study_files
    settings.DOWNLOADS_DIR = downloads
    users = {}
    for name in ("alice", "bob", "viewer"):
        users[name] = django_user_model.objects.create(username=name)  # a token is enough; no password to hash
        users[name].token = Token.objects.create(user=users[name]).key
    users["viewer"].user_permissions.add(Permission.objects.get(codename="view_all_jobs"))
    for name in ("alice", "bob"):
        catalog_files(sorted((downloads / "LK" / name).rglob("*.dcm")), source="retrieved", owner=users[name])
    return {"downloads": downloads, "alice_data": alice_data, "bob_data": bob_data, **users}


def files_of(root: Path, study: dict) -> list[Path]:
    import pydicom

    return sorted(p for p in root.rglob("*.dcm")
                  if pydicom.dcmread(p, stop_before_pixels=True).StudyInstanceUID == study["StudyInstanceUID"])
