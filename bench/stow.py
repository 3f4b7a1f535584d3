"""STOW-RS benchmark: one huge multi-frame instance (`--huge-mb`, default 2000) and one CT study (default
500 instances, 512x512) stored into the portal as `make run` serves it (gunicorn, here one gthread worker so
its memory is one process's), each as one multipart/related request, interleaved, `--repeat` rounds.

    .venv/bin/python bench/stow.py [--repeat 3] [--instances 500] [--huge-mb 2000]

Per request: wall time as `curl` reports it (time_total; the body sent from a file, `-T`), the worker's CPU
seconds (utime + stime from /proc, less disturbed by other load) and its peak RSS growth (VmHWM after the
request, reset before it through /proc/<pid>/clear_refs, less VmRSS before). The reference is the CT
study's MB/s in the same run: the target is the huge instance at the same rate and in < 100 MB. Every
stored file is checked once to be the file sent. Each round stores as another account (nothing is a
second copy). Output: markdown on stdout and in bench/results/stow-<date>.md (git-ignored).
"""
from __future__ import annotations

import argparse
import filecmp
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pydicom

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from apps.dicom.demo.huge import write_huge_instance  # noqa: E402
from apps.dicom.demo.synthetic import write_dataset  # noqa: E402
from bench.publish import DEPLOYED, publish, scratch  # noqa: E402
from tests.pacs import free_ports, port_open  # noqa: E402  (needs the repo root on sys.path)

TICKS = os.sysconf("SC_CLK_TCK")

USERS = """
from django.contrib.auth.models import Permission, User
from rest_framework.authtoken.models import Token
store = Permission.objects.get(codename='store_dicomweb')
for n in range(-1, %d - 1):
    user = User.objects.create_user(f'stower{n}')
    user.user_permissions.add(store)
    print(Token.objects.create(user=user).key)
"""


def manage(env: dict, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], env=env, cwd=ROOT, input=stdin,
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout


def body_file(files: list[Path], out: Path) -> str:
    """A STOW-RS body holding `files` written to `out`, piece by piece; its Content-Type."""
    boundary = uuid.uuid4().hex
    with open(out, "wb") as body:
        for path in files:
            body.write(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode())
            with open(path, "rb") as fp:
                while piece := fp.read(1 << 20):
                    body.write(piece)
            body.write(b"\r\n")
        body.write(f"--{boundary}--\r\n".encode())
    return f'multipart/related; type="application/dicom"; boundary={boundary}'


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} for {pid}")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def post(url: str, token: str, body: Path, content_type: str, worker: int) -> tuple[float, float, float]:
    """(seconds, worker CPU seconds, worker peak RSS growth in MB) of one STOW-RS request."""
    Path(f"/proc/{worker}/clear_refs").write_text("5")  # VmHWM starts again from VmRSS
    before, cpu = status_kb(worker, "VmRSS"), cpu_seconds(worker)
    done = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{time_total} %{http_code}", "-X", "POST",
                           "-T", str(body), "-H", f"Content-Type: {content_type}", "-H", "Expect:",
                           "-H", f"Authorization: Token {token}", "-H", "Accept: application/dicom+json", url],
                          capture_output=True, text=True, check=True)
    seconds, status = done.stdout.split()
    if status != "200":
        raise RuntimeError(f"STOW-RS answered {status}")
    return float(seconds), cpu_seconds(worker) - cpu, (status_kb(worker, "VmHWM") - before) / 1024


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=int(os.environ.get("REPEAT", 3)))
    parser.add_argument("--instances", type=int, default=int(os.environ.get("INSTANCES", 500)))
    parser.add_argument("--huge-mb", type=int, default=int(os.environ.get("HUGE_MB", 2000)))
    args = parser.parse_args(argv)

    work = scratch("stow")
    print("generating the CT study and the huge instance", file=sys.stderr)
    write_dataset(work / "ct", patients=1, studies=1, series=4, instances=args.instances // 4, rows=512, cols=512,
                  modalities=("CT",), seed=5)
    ct_files = sorted((work / "ct").rglob("*.dcm"))
    write_huge_instance(work / "huge.dcm", args.huge_mb)
    loads = {"CT study": (ct_files, body_file(ct_files, work / "ct.body"), work / "ct.body"),
             "huge instance": ([work / "huge.dcm"], body_file([work / "huge.dcm"], work / "huge.body"),
                               work / "huge.body")}
    sizes = {name: sum(p.stat().st_size for p in files) for name, (files, _, _) in loads.items()}

    data = work / "portal"
    env = {**os.environ, **DEPLOYED, "DATA_DIR": str(data), "DOWNLOADS_DIR": str(data / "downloads"),
           "LOG_LEVEL": "WARNING", "ALLOWED_HOSTS": "127.0.0.1"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env.pop("DATABASE_URL", None)
    manage(env, "migrate", "--noinput")
    warm_token, *tokens = manage(env, "shell", stdin=USERS % (args.repeat + 1)).split()[-args.repeat - 1:]
    port = free_ports(1)[0]
    portal = subprocess.Popen([sys.executable, "-m", "gunicorn", "pacsportal.wsgi:application", "--bind",
                               f"127.0.0.1:{port}", "--workers", "1", "--threads", "4", "--timeout", "300"],
                              env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results: dict[str, list[tuple[float, float, float]]] = {name: [] for name in loads}
    try:
        deadline = time.monotonic() + 60
        while not port_open(port):
            if time.monotonic() > deadline or portal.poll() is not None:
                raise RuntimeError("gunicorn did not start")
            time.sleep(0.1)
        worker = int(Path(f"/proc/{portal.pid}/task/{portal.pid}/children").read_text().split()[0])
        url = f"http://127.0.0.1:{port}/dicomweb/studies"
        warm = body_file(ct_files[:1], work / "warm.body")  # the worker's first request loads what it uses
        post(url, warm_token, work / "warm.body", warm, worker)
        for run, token in enumerate(tokens):
            for name, (files, content_type, body) in loads.items():
                print(f"round {run + 1}/{args.repeat}: {name}", file=sys.stderr)
                results[name].append(post(url, token, body, content_type, worker))
                stored = data / "downloads" / "received" / f"stower{run}" / "dicomweb"
                found = sorted(stored.rglob("*.dcm"))
                if len(found) != len(files):
                    raise RuntimeError(f"{len(found)} of the {len(files)} files of the {name} were stored")
                if run == 0:
                    sent = {stored_name(p): p for p in files}
                    if not all(filecmp.cmp(p, sent[p.name], shallow=False) for p in found):
                        raise RuntimeError(f"the {name} stored is not the {name} sent")
                for path in found:  # gigabytes a round: gone before the next
                    path.unlink()
    finally:
        portal.terminate()
        portal.wait(60)

    load = os.getloadavg()
    ct_rate = sizes["CT study"] / 1e6 / statistics.median(s for s, _, _ in results["CT study"])
    ct_cpu_rate = sizes["CT study"] / 1e6 / statistics.median(c for _, c, _ in results["CT study"])
    lines = [f"# STOW-RS, {time.strftime('%Y-%m-%d %H:%M')}, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}",
             "", f"gunicorn 1 worker x 4 threads; one request each, {args.repeat} interleaved rounds, medians", "",
             "| body | MB | runs (s) | MB/s | vs the CT study | worker CPU (s) | MB per CPU-s | vs the CT study "
             "| peak RSS growth (MB, max) |", "|---|---|---|---|---|---|---|---|---|"]
    for name, runs in results.items():
        megabytes = sizes[name] / 1e6
        rate = megabytes / statistics.median(s for s, _, _ in runs)
        cpu = statistics.median(c for _, c, _ in runs)
        lines.append(f"| {name} ({len(loads[name][0])} instances) | {megabytes:.0f} | "
                     f"{' '.join(f'{s:.2f}' for s, _, _ in runs)} | {rate:.0f} | {rate / ct_rate:.2f}x | {cpu:.2f} | "
                     f"{megabytes / cpu:.0f} | {megabytes / cpu / ct_cpu_rate:.2f}x | {max(g for _, _, g in runs):.1f} |")
    publish("stow", "\n".join(lines) + "\n")
    return 0


def stored_name(path: Path) -> str:
    """The name the portal files an instance under: its SOPInstanceUID."""
    return pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID + ".dcm"


if __name__ == "__main__":
    sys.exit(main())
