"""Unpacking zip bundles refuses any unsafe entry before writing anything (zip-slip), also through the
receiving portal. (Making them: test_zipstream.py.)"""
import base64
import hashlib
import stat
import zipfile

import httpx
import pytest

from apps.delivery.bundle import BundleRefused, unpack

TUS = {"Tus-Resumable": "1.0.0"}


def files_in(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def hostile_zip(path, name, *, symlink=False):
    with zipfile.ZipFile(path, "w") as bundle:
        bundle.writestr("LK/ok_1_CT/1.dcm", b"fine")
        info = zipfile.ZipInfo(name)
        if symlink:
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        bundle.writestr(info, b"/etc/passwd" if symlink else b"evil")
    return path


@pytest.mark.parametrize("name", ["../evil.dcm", "LK/../../evil.dcm", "/tmp/evil.dcm", "C:/evil.dcm",
                                  "LK\\..\\evil.dcm", "LK/.hidden.dcm"])
def test_an_unsafe_entry_fails_the_whole_bundle_and_writes_nothing(tmp_path, name):
    out = tmp_path / "out"
    with pytest.raises(BundleRefused, match="entry"):
        unpack(hostile_zip(tmp_path / "bad.zip", name), out, max_bytes=10**6)
    assert files_in(out) == [] and not (tmp_path / "evil.dcm").exists()


def test_a_symlink_entry_or_a_zip_bomb_is_refused(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(BundleRefused, match="not a regular file"):
        unpack(hostile_zip(tmp_path / "link.zip", "LK/ok_1_CT/link.dcm", symlink=True), out, max_bytes=10**6)
    with zipfile.ZipFile(tmp_path / "bomb.zip", "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("LK/a_1_CT/1.dcm", b"\0" * 2_000_000)
    with pytest.raises(BundleRefused, match="more than 1000000 bytes"):
        unpack(tmp_path / "bomb.zip", out, max_bytes=1_000_000)
    with pytest.raises(BundleRefused, match="not a readable zip"):
        (tmp_path / "junk.zip").write_bytes(b"PK not really")
        unpack(tmp_path / "junk.zip", out, max_bytes=10)
    assert files_in(out) == []


@pytest.mark.django_db(transaction=True)
def test_a_zip_slip_upload_fails_and_the_receiving_portal_writes_nothing(receiving, uploader, tmp_path):
    from apps.delivery.models import Upload

    data = hostile_zip(tmp_path / "slip.zip", "../../outside.dcm").read_bytes()
    headers = {"Authorization": f"Token {uploader.token}", **TUS}
    with httpx.Client(base_url=receiving.url, headers=headers) as http:
        created = http.post("/api/uploads/", headers={
            "Upload-Length": str(len(data)), "Upload-Metadata": f"filename {base64.b64encode(b'b.zip').decode()}"})
        url = created.headers["Location"]
        sent = http.patch(url, content=data, headers={"Content-Type": "application/offset+octet-stream",
                                                      "Upload-Offset": "0"})
        assert sent.status_code == 204
        outcome = http.get(url).json()
    assert outcome["state"] == "failed" and "climbs out" in outcome["error"] and outcome["files"] == 0
    assert outcome["sha1"] == hashlib.sha1(data).hexdigest()
    assert not receiving.downloads.exists() or files_in(receiving.downloads) == []
    assert not (tmp_path / "outside.dcm").exists() and not (receiving.downloads.parent / "outside.dcm").exists()
    assert not Upload.objects.get().data_path.exists()
