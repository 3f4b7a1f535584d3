"""The receiving end under attack, from outside: an upload account aiming at other users' files, zips
that climb, clash or explode, a read-only disk. Each asserts nothing foreign was written and that the
answer names the cause. (Where targets send: test_attacks_targets.py.)"""
import base64
import io
import os
import stat
import subprocess
import zipfile

import httpx
import pytest
from django.contrib.auth.models import Permission
from rest_framework.authtoken.models import Token

from apps.delivery.models import Upload

pytestmark = pytest.mark.django_db(transaction=True)
TUS = {"Tus-Resumable": "1.0.0"}


def meta(filename: str) -> str:
    return f"filename {base64.b64encode(filename.encode()).decode()}"


def tus_http(receiving, token: str) -> httpx.Client:
    return httpx.Client(base_url=receiving.url, headers={"Authorization": f"Token {token}", **TUS}, timeout=30)


def send_whole(http: httpx.Client, filename: str, data: bytes) -> httpx.Response:
    """Creation-with-upload: the whole file in one request; the answer carries the outcome."""
    return http.post("/api/uploads/", content=data, headers={
        "Upload-Length": str(len(data)), "Upload-Metadata": meta(filename),
        "Content-Type": "application/offset+octet-stream"})


def outcome(http: httpx.Client, response: httpx.Response) -> dict:
    assert response.status_code in (201, 204), response.text
    return http.get(response.headers["Location"] if "Location" in response.headers else response.url).json()


def zip_of(entries: dict[str, bytes], *, compress=zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compress) as bundle:
        for name, data in entries.items():
            if name.endswith("/"):
                bundle.writestr(zipfile.ZipInfo(name), b"")
            else:
                bundle.writestr(name, data)
    return buffer.getvalue()


def tree(root) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --- item 2: an upload never lands outside its account's folder, never replaces a file ------------------
def test_a_single_file_named_like_a_retrieved_image_lands_in_the_uploaders_own_folder(receiving, uploader):
    downloads = receiving.downloads.parent.parent  # DOWNLOADS_DIR
    retrieved = downloads / "ORTH" / "20220501_P1_CT" / "1.2.3.dcm"
    retrieved.parent.mkdir(parents=True)
    retrieved.write_bytes(b"the real patient's image")
    with tus_http(receiving, uploader.token) as http:
        answer = send_whole(http, "ORTH/20220501_P1_CT/1.2.3.dcm", b"another patient's image")
        assert answer.headers["Upload-State"] == "stored"
    assert retrieved.read_bytes() == b"the real patient's image"
    assert (downloads / "received" / "far-site" / "ORTH/20220501_P1_CT/1.2.3.dcm").read_bytes() == \
        b"another patient's image"


def test_two_accounts_never_share_a_folder_and_never_overwrite_each_other(receiving, uploader, django_user_model):
    other = django_user_model.objects.create_user(username="site-c", password="site-c-pass-1")
    other.user_permissions.add(Permission.objects.get(codename="add_upload"))
    with tus_http(receiving, uploader.token) as mine, tus_http(receiving, Token.objects.create(user=other).key) as theirs:
        assert send_whole(mine, "LK/a_1_CT/1.dcm", b"mine").headers["Upload-State"] == "stored"
        assert send_whole(theirs, "LK/a_1_CT/1.dcm", b"theirs").headers["Upload-State"] == "stored"
    received = receiving.downloads.parent
    assert (received / "far-site/LK/a_1_CT/1.dcm").read_bytes() == b"mine"
    assert (received / "site-c/LK/a_1_CT/1.dcm").read_bytes() == b"theirs"


def test_the_same_bytes_again_are_accepted_other_bytes_fail_naming_the_file(receiving, uploader):
    with tus_http(receiving, uploader.token) as http:
        assert send_whole(http, "LK/a_1_CT/1.dcm", b"first").headers["Upload-State"] == "stored"
        again = send_whole(http, "LK/a_1_CT/1.dcm", b"first")
        assert again.headers["Upload-State"] == "stored" and again.headers["Upload-Files"] == "1"
        assert "already" in outcome(http, again)["error"]
        other = send_whole(http, "LK/a_1_CT/1.dcm", b"other bytes")
        assert other.headers["Upload-State"] == "failed"
        error = outcome(http, other)["error"]
        assert "LK/a_1_CT/1.dcm" in error and "other content" in error and "never replaced" in error
    assert (receiving.downloads / "LK/a_1_CT/1.dcm").read_bytes() == b"first"


def test_a_zip_with_one_clashing_entry_writes_nothing_and_names_it(receiving, uploader):
    existing = receiving.downloads / "LK/a_1_CT/2.dcm"
    existing.parent.mkdir(parents=True)
    existing.write_bytes(b"kept")
    data = zip_of({"LK/a_1_CT/1.dcm": b"new one", "LK/a_1_CT/2.dcm": b"changed", "LK/b_2_MR/3.dcm": b"new too"})
    with tus_http(receiving, uploader.token) as http:
        answer = send_whole(http, "batch-1.zip", data)
        assert answer.headers["Upload-State"] == "failed"
        assert "LK/a_1_CT/2.dcm" in outcome(http, answer)["error"]
    assert tree(receiving.downloads) == {"LK/a_1_CT/2.dcm": b"kept"}  # nothing moved, nothing left behind
    assert not Upload.objects.get().data_path.exists()


@pytest.mark.parametrize("layout, entries, named", [
    ("folder", {"LK/case": b"a file where a folder is"}, "folder of that name"),
    ("file", {"LK/note.txt/1.dcm": b"under a file"}, "already a file here"),
    (None, {"LK/x": b"file", "LK/x/1.dcm": b"and under it"}, "as a file"),
])
def test_a_zip_entry_clashing_with_a_file_or_folder_fails_cleanly(receiving, uploader, layout, entries, named):
    root = receiving.downloads
    (root / "LK/case").mkdir(parents=True)
    (root / "LK/case/kept.dcm").write_bytes(b"kept")
    (root / "LK/note.txt").write_bytes(b"a note")
    before = tree(root)
    with tus_http(receiving, uploader.token) as http:
        answer = send_whole(http, "batch.zip", zip_of({"LK/first/0.dcm": b"earlier entry", **entries}))
        assert answer.status_code == 201 and answer.headers["Upload-State"] == "failed"
        assert named in outcome(http, answer)["error"]
    assert tree(root) == before and not (root / "LK/first").exists()


def test_an_empty_upload_named_like_an_existing_folder_is_a_clear_409(receiving, uploader):
    (receiving.downloads / "LK/case").mkdir(parents=True)
    with tus_http(receiving, uploader.token) as http:
        response = http.post("/api/uploads/", headers={"Upload-Length": "0", "Upload-Metadata": meta("LK/case")})
    assert response.status_code == 409 and "LK/case" in response.json()["error"]
    assert "folder" in response.json()["error"] and not Upload.objects.exists()
    assert (receiving.downloads / "LK/case").is_dir()


# --- item 6: zip bombs, zip-slip, links; unpacking off the request -------------------------------------
def test_an_entry_over_the_ratio_fails_the_upload_and_writes_nothing(receiving, uploader):
    data = zip_of({"LK/a_1_CT/ok.dcm": b"fine", "LK/a_1_CT/bomb.dcm": b"\0" * 5_000_000},
                  compress=zipfile.ZIP_DEFLATED)
    assert len(data) < 10_000
    with tus_http(receiving, uploader.token) as http:
        answer = send_whole(http, "bomb.zip", data)
        assert answer.headers["Upload-State"] == "failed"
        error = outcome(http, answer)["error"]
    assert "LK/a_1_CT/bomb.dcm" in error and "times its compressed size" in error and "zip bomb" in error
    assert not receiving.downloads.exists() or tree(receiving.downloads) == {}


def test_a_zip_over_the_total_cap_fails_the_upload_and_writes_nothing(receiving, uploader, settings):
    settings.UPLOAD_MAX_UNPACK_FACTOR = 3
    # Each entry compresses about 6 times (under the per-entry ratio), the whole more than 3 times.
    entries = {f"LK/a_1_CT/{n}.dcm": os.urandom(2000) + b"\0" * 10_000 for n in range(10)}
    data = zip_of(entries, compress=zipfile.ZIP_DEFLATED)
    with tus_http(receiving, uploader.token) as http:
        answer = send_whole(http, "wide.zip", data)
        assert answer.headers["Upload-State"] == "failed"
        error = outcome(http, answer)["error"]
    assert f"more than {3 * len(data)} bytes" in error and "zip bomb" in error
    assert not receiving.downloads.exists() or tree(receiving.downloads) == {}


def hostile_entry(name: str, *, symlink: bool = False) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("LK/a_1_CT/ok.dcm", b"fine")
        info = zipfile.ZipInfo(name)
        if symlink:
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        bundle.writestr(info, b"/etc/passwd" if symlink else b"escaped")
    return buffer.getvalue()


@pytest.mark.parametrize("name, symlink, said", [
    ("../../outside.dcm", False, "climbs out"), ("/tmp/absolute.dcm", False, "absolute path"),
    ("LK/a_1_CT/link.dcm", True, "not a regular file"),
])
def test_zip_slip_absolute_names_and_links_are_refused(receiving, uploader, name, symlink, said, tmp_path):
    with tus_http(receiving, uploader.token) as http:
        answer = send_whole(http, "slip.zip", hostile_entry(name, symlink=symlink))
        assert answer.headers["Upload-State"] == "failed" and said in outcome(http, answer)["error"]
    assert not receiving.downloads.exists() or tree(receiving.downloads) == {}
    assert not (tmp_path / "outside.dcm").exists() and not os.path.exists("/tmp/absolute.dcm")


def test_a_zip_is_unpacked_by_a_worker_not_in_the_request(live_server, uploader, settings, tmp_path, broker,
                                                          trusted_loopback):
    from django_q.signing import SignedPackage

    from apps.delivery.receiving import unpack_upload

    settings.DOWNLOADS_DIR, settings.UPLOADS_DIR = tmp_path / "downloads", tmp_path / "uploads"
    with tus_http(live_server, uploader.token) as http:
        answer = send_whole(http, "batch.zip", zip_of({"LK/a_1_CT/1.dcm": b"one"}))
        assert answer.headers["Upload-State"] == "unpacking"
        assert http.get(answer.headers["Location"]).json()["state"] == "unpacking"
        assert not (tmp_path / "downloads").exists() or tree(tmp_path / "downloads") == {}
        tasks = [SignedPackage.loads(m.payload) for m in broker.connection.order_by("id")]
        assert [(t["func"], t["args"]) for t in tasks] == [("apps.delivery.receiving.unpack_upload",
                                                            (str(Upload.objects.get().pk),))]
        assert unpack_upload(*tasks[0]["args"]) == "unpacked"
        assert http.get(answer.headers["Location"]).json()["state"] == "unpacked"
    assert tree(tmp_path / "downloads/received/far-site") == {"LK/a_1_CT/1.dcm": b"one"}


# --- a read-only downloads folder: the upload stays resumable and says why ---------------------------
@pytest.fixture
def read_only_downloads(receiving):
    """The received folder on a read-only file system (a real mount when we are root, else chmod)."""
    folder = receiving.downloads.parent
    folder.mkdir(parents=True)
    mounted = os.geteuid() == 0 and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(folder)], capture_output=True).returncode == 0
    if not mounted:
        folder.chmod(0o555)

    def writable():
        if mounted:
            subprocess.run(["umount", str(folder)], check=True)
        folder.chmod(0o755)

    yield writable
    if mounted:
        subprocess.run(["umount", str(folder)], capture_output=True)
    folder.chmod(0o755)


def test_an_upload_completing_on_a_read_only_disk_stays_resumable(receiving, uploader, read_only_downloads):
    with tus_http(receiving, uploader.token) as http:
        url = http.post("/api/uploads/", headers={"Upload-Length": "10", "Upload-Metadata": meta("LK/a_1_CT/1.dcm")}
                        ).headers["Location"]
        first = http.patch(url, content=b"01234", headers={"Content-Type": "application/offset+octet-stream",
                                                           "Upload-Offset": "0"})
        assert first.status_code == 204
        last = http.patch(url, content=b"56789", headers={"Content-Type": "application/offset+octet-stream",
                                                          "Upload-Offset": "5"})
        assert last.status_code == 503 and "cannot write into its downloads folder" in last.json()["error"]
        assert last.headers["Upload-Offset"] == "5" and http.head(url).headers["Upload-Offset"] == "5"
        assert http.get(url).json()["state"] == "receiving"
        read_only_downloads()
        again = http.patch(url, content=b"56789", headers={"Content-Type": "application/offset+octet-stream",
                                                           "Upload-Offset": "5"})
        assert again.status_code == 204 and again.headers["Upload-State"] == "stored"
    assert (receiving.downloads / "LK/a_1_CT/1.dcm").read_bytes() == b"0123456789"


def test_no_server_may_be_named_like_the_uploads_folder(api, admin_client_logged_in):
    """A server's retrievals land in DOWNLOADS_DIR/<server>/: one named 'received' would mix them with
    (and let uploads clash with) what other portals upload."""
    from apps.servers.models import DicomServer

    body = {"ae_title": "R", "host": "10.0.0.9", "port": 104}
    for name in ("received", "RECEIVED"):
        response = api.post("/api/servers/", {"name": name, **body}, format="json")
        assert response.status_code == 400 and "reserved" in str(response.json()["name"])
    page = admin_client_logged_in.post("/admin/servers/dicomserver/add/", {
        "name": "Received", "query_timeout": 30, "download_timeout": 120, "retries": 2, "retrieve_method": "c-move",
        "max_associations": 2, "dicomweb_auth": "none", "open_to_everyone": "on", **body})
    assert page.status_code == 200 and "is reserved" in page.content.decode()
    assert not DicomServer.objects.exists()
