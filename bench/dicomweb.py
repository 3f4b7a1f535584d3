"""DICOMweb benchmark: WADO-RS of one 500-instance study from the portal (gunicorn as `make run` starts it,
token auth, the catalog, multipart streamed from the files) against Orthanc's own DICOMweb plugin serving
the same study, in the same run; and QIDO-RS of one study among 100,000 catalogued instances.

    .venv/bin/python bench/dicomweb.py [--instances 500] [--size 512] [--repeat 5] [--catalog 100000]

What is timed: `curl` fetching the whole multipart answer of GET studies/{uid} (Accept: multipart/related;
type="application/dicom") into /dev/null, wall clock as curl reports it (time_total); every answer is
checked once to hold every instance, byte for byte the files (the portal) or their count and size (Orthanc).
Runs interleave; medians. Ratio = Orthanc's time / the portal's (above 1x the portal is faster).
QIDO: GET studies?StudyInstanceUID=<one> and studies?PatientID=<one>, by a user who sees only their own
instances and by one who sees all, each the median of 20 curl runs after the catalog got --catalog rows.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.pacs import Orthanc, free_ports, port_open  # noqa: E402  (needs the repo root on sys.path)

ACCEPT = 'Accept: multipart/related; type="application/dicom"'


def manage(env: dict, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], env=env, cwd=ROOT, input=stdin,
                          capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout


def curl(url: str, *headers: str) -> tuple[float, int, int]:
    """(seconds, bytes, HTTP status) of one GET into /dev/null."""
    command = ["curl", "-s", "-o", "/dev/null", "-w", "%{time_total} %{size_download} %{http_code}", url]
    for header in headers:
        command += ["-H", header]
    seconds, size, status = subprocess.run(command, capture_output=True, text=True, check=True).stdout.split()
    return float(seconds), int(size), int(status)


SETUP = """
import sys
from django.contrib.auth.models import User, Permission
from rest_framework.authtoken.models import Token
from apps.catalog.models import Instance
from apps.catalog.rebuild import rebuild
rebuild()
boss = User.objects.create_user('boss')
boss.user_permissions.add(Permission.objects.get(codename='view_all_jobs'))
plain = User.objects.create_user('plain')
Instance.objects.update(owner=plain)
print(Token.objects.create(user=boss).key, Token.objects.create(user=plain).key)
"""

FILL = """
from apps.catalog.models import Instance
from django.contrib.auth.models import User
owner, other = User.objects.get(username='plain'), User.objects.create_user('other')
template = Instance.objects.first()
values = {f.attname: getattr(template, f.attname) for f in Instance._meta.concrete_fields if f.attname not in ('id', 'path')}
rows, total = [], %d
for n in range(total):
    study = n // 50
    rows.append(Instance(**{**values, 'path': f'/bench/{n}.dcm', 'owner_id': (owner if n %% 2 else other).pk,
                             'study_instance_uid': f'1.2.826.0.1.3680043.10.{study}', 'patient_id': f'P{study // 2:06d}',
                             'series_instance_uid': f'1.2.826.0.1.3680043.11.{n // 10}',
                             'sop_instance_uid': f'1.2.826.0.1.3680043.12.{n}', 'study_date': f'2024{1 + study %% 12:02d}15'}))
    if len(rows) == 5000:
        Instance.objects.bulk_create(rows)
        rows = []
Instance.objects.bulk_create(rows)
print(Instance.objects.count())
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=int(os.environ.get("INSTANCES", 500)))
    parser.add_argument("--series", type=int, default=4)
    parser.add_argument("--size", type=int, default=int(os.environ.get("SIZE", 512)))
    parser.add_argument("--repeat", type=int, default=int(os.environ.get("REPEAT", 5)))
    parser.add_argument("--catalog", type=int, default=100_000)
    args = parser.parse_args(argv)
    from apps.dicom.demo.synthetic import write_dataset

    work = Path(tempfile.mkdtemp(prefix="bench-dicomweb-"))
    orthanc = portal = None
    try:
        data = work / "portal"
        downloads = data / "downloads" / "BENCH"
        manifest = write_dataset(downloads, patients=1, studies=1, series=args.series,
                                 instances=args.instances // args.series, rows=args.size, cols=args.size,
                                 modalities=("CT",), seed=5)
        study = manifest["studies"][0]["StudyInstanceUID"]
        files = {p.read_bytes() for p in downloads.rglob("*.dcm")}
        megabytes = manifest["bytes"] / 1e6
        orthanc = Orthanc(work / "orthanc").start()
        orthanc.load(downloads)

        env = {**os.environ, "DEBUG": "0", "SECRET_KEY": "bench-only", "DATA_DIR": str(data), "LOG_LEVEL": "WARNING",
               "DOWNLOADS_DIR": str(data / "downloads"), "ALLOWED_HOSTS": "127.0.0.1", "SECURE_SSL": "0"}
        env.pop("DJANGO_SETTINGS_MODULE", None)
        manage(env, "migrate", "--noinput")
        boss, plain = manage(env, "shell", stdin=SETUP).split()[-2:]
        port = free_ports(1)[0]
        portal = subprocess.Popen([sys.executable, "-m", "gunicorn", "pacsportal.wsgi:application", "--bind",
                                   f"127.0.0.1:{port}", "--workers", "2", "--threads", "4", "--timeout", "120"],
                                  env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not port_open(port):
            if time.monotonic() > deadline or portal.poll() is not None:
                raise RuntimeError("gunicorn did not start")
            time.sleep(0.1)
        ours = f"http://127.0.0.1:{port}/dicomweb/studies/{study}"
        theirs = f"http://127.0.0.1:{orthanc.http_port}/dicom-web/studies/{study}"
        auth = f"Authorization: Token {plain}"

        check_portal(ours, auth, files)
        check_orthanc(orthanc, study, len(files))
        times = {"portal": [], "orthanc": []}
        for _ in range(args.repeat):
            for name, url, headers in (("orthanc", theirs, (ACCEPT,)), ("portal", ours, (ACCEPT, auth))):
                seconds, size, status = curl(url, *headers)
                assert status == 200, (name, status)
                times[name].append(seconds)
        portal_s, orthanc_s = statistics.median(times["portal"]), statistics.median(times["orthanc"])

        manage(env, "shell", stdin=FILL % args.catalog)
        one = "1.2.826.0.1.3680043.10.777"
        qido = {}
        for who, token in (("own", plain), ("all", boss)):
            for key, value in (("StudyInstanceUID", one), ("PatientID", "P000388")):
                url = f"http://127.0.0.1:{port}/dicomweb/studies?{key}={value}"
                runs = [curl(url, f"Authorization: Token {token}") for _ in range(20)]
                assert all(status == 200 for _, _, status in runs), (who, key, runs[0])
                qido[(who, key)] = statistics.median(s for s, _, _ in runs) * 1000
        load = os.getloadavg()[0]
        lines = [f"# DICOMweb, {time.strftime('%Y-%m-%d %H:%M')}, load average {load:.1f}", "",
                 f"WADO-RS of one study, {len(files)} instances, {args.size}x{args.size} CT, {megabytes:.0f} MB; "
                 f"{args.repeat} interleaved runs, medians", "",
                 "| server | seconds | MB/s | ratio |", "|---|---|---|---|",
                 f"| Orthanc DICOMweb plugin | {orthanc_s:.2f} | {megabytes / orthanc_s:.0f} | 1.00x |",
                 f"| portal /dicomweb/ (gunicorn 2x4) | {portal_s:.2f} | {megabytes / portal_s:.0f} | "
                 f"**{orthanc_s / portal_s:.2f}x** |", "",
                 f"QIDO-RS studies among {args.catalog + len(files):,} catalogued instances, median of 20, ms", "",
                 "| user | StudyInstanceUID | PatientID |", "|---|---|---|",
                 *(f"| sees {who} | {qido[(who, 'StudyInstanceUID')]:.1f} | {qido[(who, 'PatientID')]:.1f} |"
                   for who in ("own", "all"))]
        report = "\n".join(lines) + "\n"
        print(report)
        results = ROOT / "bench" / "results"
        results.mkdir(exist_ok=True)
        (results / f"dicomweb-{time.strftime('%Y%m%d-%H%M')}.md").write_text(report)
        return 0
    finally:
        if portal is not None:
            portal.terminate()
            portal.wait(30)
        if orthanc is not None:
            orthanc.stop()
        shutil.rmtree(work, ignore_errors=True)


def check_portal(url: str, auth: str, files: set[bytes]) -> None:
    import httpx

    from apps.dicom import multipart

    response = httpx.get(url, headers={"Authorization": auth.split(": ", 1)[1]}, timeout=120)
    _, params = multipart.parse_media_type(response.headers["content-type"])
    body = response.content
    got = {body[p.start:p.end] for p in multipart.split(body, params["boundary"])}
    if got != files:
        raise RuntimeError(f"the portal answered {len(got)} instances, not the {len(files)} files")


def check_orthanc(orthanc: Orthanc, study: str, count: int) -> None:
    if len(orthanc.study_instances(study)) != count:
        raise RuntimeError("Orthanc does not hold the whole study")


if __name__ == "__main__":
    sys.exit(main())
