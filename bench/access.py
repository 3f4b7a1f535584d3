"""Access benchmark: what the permission model costs an API request, on a real gunicorn, timed by curl.

    .venv/bin/python bench/access.py [--requests 200] [--jobs 20]

A throw-away portal (SQLite in a temp DATA_DIR, one gunicorn sync worker) with two users and --jobs
retrieval jobs each. curl sends --requests requests per case in one process (one connection each, as a
script would) and reports the median and 95th percentile of its own `time_total`. Two references run in
the same process tree, interleaved: the same portal with the access layer taken out (DRF's plain token
authentication and IsAuthenticated: bench/access_off_settings.py), and `/healthz`, which runs no
authentication at all. The SQL queries each case runs are counted in-process with Django's test client. Printed as a markdown table and written
to bench/results/access-<date>.md.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.publish import DEPLOYED  # noqa: E402  (needs the repo root on sys.path)
from tests.pacs import free_ports, port_open  # noqa: E402


def configure_django(work: Path) -> dict:
    env = {**DEPLOYED, "DJANGO_SETTINGS_MODULE": "pacsportal.settings", "DATA_DIR": str(work), "LOG_LEVEL": "WARNING", "DEMO_PACS": "0",
           # A bad token per request must not lock the bench out, and no rate may throttle it.
           "LOGIN_FAILURE_LIMIT": "1000000", "API_RATE_USER": "1000000/min"}
    os.environ.update(env)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    return {**os.environ, **env}


def make_data(jobs: int) -> str:
    """Two technologists with `jobs` retrieval jobs each; returns the first one's token."""
    from django.contrib.auth.models import Group, Permission, User
    from rest_framework.authtoken.models import Token

    from apps.retrieval.models import RetrievalItem, RetrievalJob
    from apps.servers.models import DicomServer

    techs = Group.objects.create(name="Technologists")
    techs.permissions.set(Permission.objects.filter(codename__in=[
        "view_dicomserver", "view_retrievaljob", "start_retrieval", "query_server"]))
    server = DicomServer.objects.create(name="LK", ae_title="LK", host="127.0.0.1", port=1, open_to_everyone=False)
    server.retrieve_groups.add(techs)
    users = [User.objects.create_user(name) for name in ("tech", "other")]
    for user in users:
        user.groups.add(techs)
        for n in range(jobs):
            job = RetrievalJob.objects.create(created_by=user, source_name=f"{user.username}-{n}.csv")
            RetrievalItem.objects.create(job=job, line=2, patient_id=f"P{n}", study_date="20240101",
                                         dicom_server=server, server_name="LK", status="succeeded")
    return Token.objects.create(user=users[0]).key


CASES = [  # (label, path, authorization header or "")
    ("/healthz (no auth: reference)", "/healthz", ""),
    ("GET /api/servers/ (token)", "/api/servers/", "good"),
    ("GET /api/servers/LK/ (token)", "/api/servers/LK/", "good"),
    ("GET /api/retrievals/ own jobs (token)", "/api/retrievals/", "good"),
    ("GET /api/servers/ bad token (401, counted)", "/api/servers/", "bad"),
]


def curl_times(url: str, header: str, count: int) -> tuple[list[float], set[str]]:
    args = ["curl", "-s", "-w", "%{http_code} %{time_total}\n"]
    if header:
        args += ["-H", f"Authorization: {header}"]
    for _ in range(count):
        args += ["-o", "/dev/null", url]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout.split("\n")
    codes = {line.split()[0] for line in out if line}
    times = [float(line.split()[1]) * 1000 for line in out if line]
    return times, codes


def query_counts(token: str) -> dict[str, int]:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client(HTTP_HOST="127.0.0.1")
    counts = {}
    for label, path, auth in CASES:
        headers = {"HTTP_AUTHORIZATION": f"Token {token if auth == 'good' else '0' * 40}"} if auth else {}
        with CaptureQueriesContext(connection) as queries:
            client.get(path, **headers)
        counts[label] = len(queries)
    return counts


class Portal:
    """One gunicorn sync worker on a free loopback port, with the given settings module."""

    def __init__(self, env: dict, settings_module: str):
        (self.port,) = free_ports(1)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "pacsportal.wsgi", "-b", f"127.0.0.1:{self.port}", "-w", "1",
             "--log-level", "warning"], cwd=ROOT, env={**env, "DJANGO_SETTINGS_MODULE": settings_module})
        deadline = time.monotonic() + 30
        while not port_open(self.port):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn with {settings_module} did not start")
            time.sleep(0.1)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per case and portal")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pacsportal-bench-access-") as tmp:
        env = configure_django(Path(tmp))
        token = make_data(args.jobs)
        counts = query_counts(token)
        portals = {"on": Portal(env, "pacsportal.settings"), "off": Portal(env, "bench.access_off_settings")}
        try:
            times = {(label, side): [] for label, _, _ in CASES for side in portals}
            codes = {}
            for _ in range(args.rounds):  # interleaved: drift on a shared machine hits both alike
                for label, path, auth in CASES:
                    header = {"good": f"Token {token}", "bad": "Token " + "0" * 40}.get(auth, "")
                    for side, portal in portals.items():
                        url = f"http://127.0.0.1:{portal.port}{path}"
                        curl_times(url, header, 5)  # warm up
                        got, codes[label, side] = curl_times(url, header, args.requests)
                        times[label, side] += got
        finally:
            for portal in portals.values():
                portal.stop()
    median = {key: statistics.median(values) for key, values in times.items()}
    reference = median[CASES[0][0], "on"]
    lines = [f"# Access benchmark {dt.datetime.now():%Y-%m-%d %H:%M}", "",
             f"{args.rounds} interleaved rounds x {args.requests} curl requests per case and portal; {args.jobs} "
             "retrieval jobs per user; one gunicorn sync worker each; SQLite; a shared 2-core machine (noisy).",
             "'off' is the same portal with DRF's plain token auth + IsAuthenticated (bench/access_off_settings.py).",
             "", "| case | status | access on: median ms | p95 ms | access off: median ms | on / off | on / healthz "
             "| SQL queries (on) |", "|---|---|---|---|---|---|---|---|"]
    for label, _, _ in CASES:
        on = times[label, "on"]
        p95 = sorted(on)[int(len(on) * 0.95) - 1]
        lines.append(f"| {label} | {','.join(sorted(codes[label, 'on']))} | {median[label, 'on']:.2f} | {p95:.2f} "
                     f"| {median[label, 'off']:.2f} | {median[label, 'on'] / median[label, 'off']:.2f} "
                     f"| {median[label, 'on'] / reference:.1f} | {counts[label]} |")
    text = "\n".join(lines) + "\n"
    print(text)
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / f"access-{dt.datetime.now():%Y%m%d-%H%M}.md").write_text(text)


if __name__ == "__main__":
    main()
