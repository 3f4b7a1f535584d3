"""The tus receiving end keeps its uploads folder's floor (MIN_FREE_GB): a chunk arriving while it is short is
answered 507 with Retry-After and not kept, the upload stays resumable at its offset, and it completes once
space returns; the last chunk also needs the downloads folder it lands in. Free space injected."""
import httpx
import pytest

from apps.jobs import diskspace
from tests.delivery.test_tus_protocol import TUS, create, patch

pytestmark = pytest.mark.django_db(transaction=True)
GB = 10 ** 9


@pytest.fixture
def tus(receiving, uploader):
    with httpx.Client(base_url=receiving.url, headers={"Authorization": f"Token {uploader.token}", **TUS},
                      timeout=30) as client:
        yield client


@pytest.fixture
def free(monkeypatch, settings):
    settings.MIN_FREE_GB, settings.MIN_FREE_GB_BY_FOLDER = 10, {}
    space = {"uploads": 100 * GB, "received": 100 * GB}
    monkeypatch.setattr(diskspace, "free_bytes", lambda path: space.get(path.name, 100 * GB))
    monkeypatch.setattr(diskspace, "_alerted", {})
    return space


def test_a_chunk_on_a_full_disk_is_refused_and_the_upload_resumes_once_space_returns(tus, receiving, free):
    http = tus
    data = b"A" * 1000 + b"B" * 500
    url = create(http, len(data))
    free["uploads"] = 2 * GB
    refused = patch(http, url, 0, data[:1000])
    assert refused.status_code == 507 and refused.headers["Retry-After"] == "60"
    assert "short of disk space (uploads: 2 GB free on" in refused.text and "10 GB required" in refused.text
    assert refused.headers["Upload-Offset"] == "0" and http.head(url).headers["Upload-Offset"] == "0"
    free["uploads"] = 50 * GB
    assert patch(http, url, 0, data[:1000]).status_code == 204
    free["received"] = GB  # DOWNLOADS_DIR of the receiving portal: the last chunk would land there
    last = patch(http, url, 1000, data[1000:])
    assert last.status_code == 507 and "downloads: 1 GB free on" in last.text
    assert http.head(url).headers["Upload-Offset"] == "1000"
    free["received"] = 50 * GB
    assert patch(http, url, 1000, data[1000:]).status_code == 204
    assert (receiving.downloads / "LK/20220501_DLV00001_CT/1.2.3.dcm").read_bytes() == data
