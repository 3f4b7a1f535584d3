"""Bad requests that used to answer 500 or Django's HTML page answer a 4xx in the API's error shape,
naming the rule: JSON that is not an object, 5,000 form fields, an empty case-list file."""
from urllib.parse import urlencode

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from apps.retrieval.models import RetrievalJob
from tests.test_auth import API_URLS

pytestmark = pytest.mark.django_db
NOT_OBJECTS = [[1, 2], "rows", 7, None]


@pytest.fixture
def boss(django_user_model):
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(django_user_model.objects.create_superuser("boss", password="x", email=""))
    return client


def test_json_that_is_not_an_object_is_never_a_500_on_any_route(boss):
    failures = [(method, url, body, response.status_code)
                for url in API_URLS for method in ("post", "put", "patch") for body in NOT_OBJECTS
                for response in [getattr(boss, method)(url, body, format="json")] if response.status_code >= 500]
    assert failures == []


@pytest.mark.parametrize("body,kind", [([{"PatientID": "P1"}], "list"), ("rows", "string"), (7, "number")])
def test_a_json_list_as_a_retrieval_says_what_the_body_must_be(api, body, kind):
    answer = api.post("/api/retrievals/", body, format="json")
    assert answer.status_code == 400
    assert answer.json() == {"error": "The body must be a JSON object ({\"rows\": [...]}) or a multipart form with "
                                      f"'file'; got a JSON {kind}."}
    assert not RetrievalJob.objects.exists()


def many_fields(count: int) -> dict:
    return {f"f{n}": "x" for n in range(count)}


@pytest.mark.parametrize("url", ["/api/retrievals/", "/api/sends/", "/api/servers/"])
@pytest.mark.parametrize("encoding", ["urlencoded", "multipart"])
def test_five_thousand_form_fields_get_a_json_400_naming_the_limit(api, settings, url, encoding):
    if encoding == "urlencoded":
        answer = api.post(url, urlencode(many_fields(5000)), content_type="application/x-www-form-urlencoded")
    else:
        answer = api.post(url, many_fields(5000), format="multipart")
    assert answer.status_code == 400 and answer["Content-Type"] == "application/json"
    assert answer.json() == {"detail": f"The request has more than {settings.DATA_UPLOAD_MAX_NUMBER_FIELDS} form "
                                       "fields (DATA_UPLOAD_MAX_NUMBER_FIELDS); send fewer."}


def test_the_photo_route_answers_too_many_fields_in_its_own_shape(api, settings):
    answer = api.post("/api/studies", many_fields(5000), format="multipart")
    assert answer.status_code == 400
    assert answer.json()["code"] == "VALIDATION_ERROR" and answer.json()["status"] == "error"
    assert "DATA_UPLOAD_MAX_NUMBER_FIELDS" in answer.json()["message"]


def test_pages_outside_the_api_keep_djangos_page(client):
    answer = client.post("/admin/login/", urlencode(many_fields(5000)),
                         content_type="application/x-www-form-urlencoded")
    assert answer.status_code in (400, 403) and answer["Content-Type"].startswith("text/html")


@pytest.mark.parametrize("content,words", [
    (b"", "the file is empty"),
    (b"\xef\xbb\xbf \n\n", "the file is empty"),
    (b"PatientID,StudyDate,Modality,Server\n# nothing yet\n", "holds no case rows (only a header, comments"),
])
def test_an_empty_case_list_says_it_is_empty(api, content, words):
    answer = api.post("/api/retrievals/", {"file": SimpleUploadedFile("cases.csv", content)})
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("cases.csv: ") and words in answer.json()["error"], answer.json()
    assert not RetrievalJob.objects.exists()


@pytest.mark.parametrize("url", ["/api/retrievals/", "/api/sends/", "/api/servers/"])
def test_a_chunked_body_is_refused_with_411_naming_the_missing_length(api, url):
    answer = api.generic("POST", url, b"", content_type="application/json", HTTP_TRANSFER_ENCODING="chunked")
    assert answer.status_code == 411
    assert answer.json() == {"detail": "The request body was sent without a Content-Length (chunked transfer "
                                       "encoding), which this server cannot read; send it with its length."}
