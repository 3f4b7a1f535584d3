"""Photo benchmark: 20 uploads of one 12-megapixel JPEG through the real API (gunicorn, token auth,
POST /api/studies: upload, conversion, C-STORE) into a real Orthanc, against the reference measured in
the same run: the conversion alone (apps.dicom.capture, in this process) plus DCMTK `storescu` of its
result.

    .venv/bin/python bench/photos.py [--uploads 20] [--width 4000 --height 3000]

Runs interleave (API, reference, API, ...), so drift on a shared VM hits both alike. Prints p50/p95
of each and the ratio API / reference (target: p95 at most 1.2x, issue 27), as a markdown table on stdout and in
bench/results/photos-<date>.md. API times are the client's wall clock from sending the request to
having the answer; the reference is conversion wall clock + storescu process wall clock.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.publish import DEPLOYED, scratch  # noqa: E402
from tests.pacs import Orthanc, free_ports, port_open  # noqa: E402  (needs the repo root on sys.path)

DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}  # DCMTK leaves Nagle on otherwise (pacs-lab README)
PORTAL_AE = "BENCHPHOTO"


def phone_photo(path: Path, width: int, height: int) -> Path:
    """A photo-like 12 MP JPEG (smooth light, edges, sensor noise; EXIF orientation 6 as a phone held
    upright writes it), about the size a phone camera produces."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    scene = np.stack([128 + 90 * np.sin(x / 370.0 + c) * np.cos(y / 290.0 - c) for c in (0.0, 1.1, 2.3)], axis=-1)
    scene[(x // 400 + y // 400) % 2 == 0] *= 0.8  # edges for the encoder to work on
    scene += rng.normal(0, 6, scene.shape)
    image = Image.fromarray(np.clip(scene, 0, 255).astype(np.uint8))
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(path, "JPEG", quality=92, exif=exif.tobytes())
    return path


def configure_django(work: Path) -> dict:
    env = {**DEPLOYED, "DJANGO_SETTINGS_MODULE": "pacsportal.settings",
           "DATA_DIR": str(work / "data"), "DICOM_AE_TITLE": PORTAL_AE, "LOG_LEVEL": "WARNING", "DEMO_PACS": "0"}
    os.environ.update(env)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    return {**os.environ, **env}


class Web:
    """gunicorn as `make run` starts it (one worker is enough for one client)."""

    def __init__(self, env: dict, port: int):
        self.proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "pacsportal.wsgi:application", "--bind",
                                      f"127.0.0.1:{port}", "--workers", "1", "--timeout", "120"],
                                     env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not port_open(port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("gunicorn did not start")
            time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def api_upload(client: httpx.Client, photo: bytes) -> float:
    started = time.monotonic()
    response = client.post("/api/studies", data={"patientId": "BENCH-1", "patientName": "王^大明"},
                           files=[("images[]", ("IMG_0001.JPG", photo, "image/jpeg"))])
    elapsed = time.monotonic() - started
    if response.status_code != 200:
        raise RuntimeError(f"API answered {response.status_code}: {response.text[:500]}")
    return elapsed


def reference(photo_path: Path, orthanc: Orthanc, out: Path) -> tuple[float, float]:
    """(conversion seconds, storescu seconds) for one photo, as the portal would convert it."""
    from pydicom.uid import generate_uid

    from apps.dicom import capture

    started = time.monotonic()
    photo = capture.read_photo(photo_path, photo_path.name, resize_max=1024)
    patient = capture.check_patient(capture.Patient("BENCH-2", "王^大明"), "ISO_IR 192")
    exam = capture.Exam(generate_uid(), generate_uid(), dt.datetime.now().astimezone())
    ds = capture.secondary_capture(photo, patient, exam, capture.CaptureOptions(source_ae=PORTAL_AE),
                                   instance_number=1, sop_instance_uid=generate_uid())
    out.write_bytes(capture.encode(ds))
    converted = time.monotonic()
    done = subprocess.run(["storescu", "-aet", PORTAL_AE, "-aec", orthanc.aet, "127.0.0.1", str(orthanc.dicom_port),
                           str(out)], env=DCMTK_ENV, capture_output=True, text=True, timeout=120)
    stored = time.monotonic()
    if done.returncode != 0:
        raise RuntimeError(f"storescu failed: {done.stderr[-1000:]}")
    return converted - started, stored - converted


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[18] if len(values) > 1 else values[0]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--uploads", type=int, default=int(os.environ.get("UPLOADS", 20)))
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--height", type=int, default=3000)
    args = parser.parse_args(argv)

    work = scratch("photos")
    env = configure_django(work)
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission
    from rest_framework.authtoken.models import Token

    from apps.photos.models import PhotoSettings
    from apps.servers.models import DicomServer

    photo_path = phone_photo(work / "IMG_0001.JPG", args.width, args.height)
    photo = photo_path.read_bytes()
    print(f"photo: {args.width}x{args.height} JPEG, {len(photo) / 1e6:.1f} MB; work in {work}", file=sys.stderr)
    orthanc = Orthanc(work / "orthanc").start()
    (web_port,) = free_ports(1)
    web = None
    try:
        server = DicomServer.objects.create(name="BENCH", ae_title=orthanc.aet, host="127.0.0.1",
                                            port=orthanc.dicom_port, retries=0)
        settings_row = PhotoSettings.load()
        settings_row.destination = server
        settings_row.save()
        user = get_user_model().objects.create_user(username="bench", password="bench-pass-123")
        user.user_permissions.add(Permission.objects.get(content_type__app_label="photos", codename="send_photos"))
        token = Token.objects.create(user=user).key
        web = Web(env, web_port)
        client = httpx.Client(base_url=f"http://127.0.0.1:{web_port}", timeout=120,
                              headers={"Authorization": f"Token {token}"})
        api_upload(client, photo)  # warm-up: imports, first connections, page cache
        reference(photo_path, orthanc, work / "reference.dcm")
        api, conversion, storescu = [], [], []
        for run in range(args.uploads):
            api.append(api_upload(client, photo))
            convert_s, store_s = reference(photo_path, orthanc, work / "reference.dcm")
            conversion.append(convert_s)
            storescu.append(store_s)
            print(f"upload {run + 1}/{args.uploads}: API {api[-1] * 1000:.0f} ms, reference "
                  f"{(convert_s + store_s) * 1000:.0f} ms", file=sys.stderr)
        stored = len(orthanc.instances())
        if stored != 2 * (args.uploads + 1):
            raise RuntimeError(f"Orthanc holds {stored} instances, expected {2 * (args.uploads + 1)}")
    finally:
        if web is not None:
            web.stop()
        orthanc.stop()
    ref = [c + s for c, s in zip(conversion, storescu)]
    rows = [("API: POST /api/studies (gunicorn, C-STORE)", api), ("reference: conversion + storescu", ref),
            ("  conversion alone (capture.py)", conversion), ("  storescu alone (DCMTK)", storescu)]
    lines = [f"# Photo benchmark {dt.datetime.now():%Y-%m-%d %H:%M}", "",
             f"{args.uploads} uploads of one {args.width}x{args.height} JPEG ({len(photo) / 1e6:.1f} MB, EXIF "
             f"orientation 6) -> 1024 px Secondary Capture -> Orthanc on loopback; {os.cpu_count()} CPUs "
             "(shared machine: expect noise).", "",
             "| variant | p50 (ms) | p95 (ms) | min (ms) | max (ms) |", "|---|---|---|---|---|"]
    for name, values in rows:
        lines.append(f"| {name} | {statistics.median(values) * 1000:.0f} | {p95(values) * 1000:.0f} | "
                     f"{min(values) * 1000:.0f} | {max(values) * 1000:.0f} |")
    lines += ["", "| ratio API / reference | value |", "|---|---|",
              f"| p50 | {statistics.median(api) / statistics.median(ref):.2f}x |",
              f"| p95 | {p95(api) / p95(ref):.2f}x (target <= 1.2x) |"]
    report = "\n".join(lines) + "\n"
    print(report)
    out = ROOT / "bench" / "results" / f"photos-{dt.date.today():%Y%m%d}.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(report)
    print(f"written to {out.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
