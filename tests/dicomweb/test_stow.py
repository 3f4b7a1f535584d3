"""STOW-RS: stored instances land under received/<account>/dicomweb/ and in the catalog, each part gets
its own answer (PS3.18 ReferencedSOPSequence / FailedSOPSequence), and the same bytes twice are fine."""
import json
import os
import time

import pytest
from django.contrib.auth.models import Permission

from apps.catalog.models import Instance
from tests.dicomweb.conftest import files_of
from tests.dicomweb.helpers import stow_body, token_client

pytestmark = pytest.mark.django_db


@pytest.fixture
def storer(catalogued):
    bob = catalogued["bob"]
    bob.user_permissions.add(Permission.objects.get(codename="store_dicomweb"))
    return token_client(bob)


def post(client, parts, url="/dicomweb/studies"):
    body, content_type = stow_body(parts)
    return client.generic("POST", url, body, content_type=content_type)


def sequence(answer, tag):
    return answer.get(tag, {}).get("Value", [])


def test_stored_instances_are_filed_catalogued_and_found(storer, catalogued, settings):
    study = catalogued["alice_data"]["studies"][0]
    files = files_of(catalogued["downloads"], study)
    response = post(storer, [("application/dicom", p.read_bytes()) for p in files])
    assert response.status_code == 200 and response["Content-Type"] == "application/dicom+json"
    answer = json.loads(response.content)
    stored = sequence(answer, "00081199")
    assert len(stored) == 6 and "00081198" not in answer
    assert answer["00081190"]["Value"][0].endswith(f"/dicomweb/studies/{study['StudyInstanceUID']}")
    folder = settings.DOWNLOADS_DIR / "received" / "bob" / "dicomweb" / study["StudyInstanceUID"]
    assert sorted(p.read_bytes() for p in folder.glob("*.dcm")) == sorted(p.read_bytes() for p in files)
    rows = Instance.objects.filter(owner=catalogued["bob"], source="stored")
    assert rows.count() == 6
    found = storer.get("/dicomweb/studies", {"StudyInstanceUID": study["StudyInstanceUID"]})
    assert json.loads(found.content)[0]["00201208"]["Value"] == [6]
    again = post(storer, [("application/dicom", files[0].read_bytes())])  # the same bytes: fine, nothing new
    assert again.status_code == 200 and rows.count() == 6


def test_a_non_dicom_part_fails_alone(storer, catalogued):
    good = files_of(catalogued["downloads"], catalogued["alice_data"]["studies"][1])[0]
    response = post(storer, [("application/dicom", b"this is not DICOM"), ("application/dicom", good.read_bytes()),
                             ("text/plain", b"hello")])
    assert response.status_code == 202
    answer = json.loads(response.content)
    failed = sequence(answer, "00081198")
    assert [f["00081197"]["Value"] for f in failed] == [[0xC000], [0xC000]]
    assert len(sequence(answer, "00081199")) == 1
    assert "part 1" in response["Warning"] and "not a DICOM file" in response["Warning"]
    assert "part 3 is text/plain" in response["Warning"]


def test_other_bytes_under_a_stored_sop_are_refused_not_replaced(storer, catalogued, settings):
    path = files_of(catalogued["downloads"], catalogued["alice_data"]["studies"][1])[0]
    data = path.read_bytes()
    assert post(storer, [("application/dicom", data)]).status_code == 200
    changed = data[:-4] + bytes(4 - len(data[-4:])) + b"\x01\x02\x03\x04"
    response = post(storer, [("application/dicom", changed)])
    assert response.status_code == 409
    assert sequence(json.loads(response.content), "00081198")[0]["00081197"]["Value"] == [0x0111]
    stored = next((settings.DOWNLOADS_DIR / "received" / "bob" / "dicomweb").rglob("*.dcm"))
    assert stored.read_bytes() == data


def test_stow_into_a_named_study_refuses_instances_of_another(storer, catalogued):
    one, two = catalogued["alice_data"]["studies"]
    path = files_of(catalogued["downloads"], two)[0]
    response = post(storer, [("application/dicom", path.read_bytes())], f"/dicomweb/studies/{one['StudyInstanceUID']}")
    assert response.status_code == 409 and "another study" in response["Warning"]


def test_what_a_killed_request_left_staged_is_removed_by_a_later_one(storer, catalogued, settings):
    staging = settings.DOWNLOADS_DIR / "received" / "bob" / "dicomweb" / ".stow"
    left, fresh = staging / "left-by-a-killed-worker", staging / "a-request-in-flight"
    for folder in (left, fresh):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "1").write_bytes(b"half an instance")
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(left, (two_days_ago, two_days_ago))
    path = files_of(catalogued["downloads"], catalogued["alice_data"]["studies"][1])[0]
    assert post(storer, [("application/dicom", path.read_bytes())]).status_code == 200
    assert sorted(p.name for p in staging.iterdir()) == ["a-request-in-flight"]
