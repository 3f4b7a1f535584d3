"""Delivery benchmark: about 1 GB of retrieved studies delivered to a second PACS Portal on loopback
(gunicorn, its own DATA_DIR and database, the real /api/uploads/ tus receiving end), in zip mode and in
direct mode, through the worker's entry point (apps.jobs.runner.run_item), against a plain `curl`
upload of the same zips to the same receiving end in the same run.

    .venv/bin/python bench/deliver.py [--megabytes 1000] [--repeat 3] [--batch-size 10] [--project]

What is timed: zip mode and direct mode, from the first batch's run_item() to the last batch confirmed
(the batch's zip produced while it is sent, the tus upload with per-chunk sha1 on both ends, the
receiving end's unpacking, the confirmation, the audit). curl: one PATCH of each ready-made zip
(`curl -T`, no checksum, so the receiving end hashes the whole file), the same unpacking; and the
portal's tus sender alone on those same zips (apps/delivery/tus_client.py, sha1 per 16 MB chunk).
Ratios are MB/s portal / MB/s curl. Runs interleave, each round starting with the next variant; medians are reported, with the CPU seconds each
side used (this process and its curl children; the receiving gunicorn's processes, from /proc) and
the load average while each variant ran.

`--project`: each portal variant runs again for a research project (the same identified retrieval,
delivered de-identified: PS3.15 E.1-1 with the dates option), and each project run is compared with the
plain run of the same mode in the same round (ratio plain seconds / project seconds; target >= 0.8).
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.pacs import free_ports, port_open  # noqa: E402  (needs the repo root on sys.path)

INSTANCE_MB = 512 * 512 * 2 / 1e6  # one 512x512 16-bit CT instance


def manage(env: dict, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], env=env, cwd=ROOT, input=stdin,
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout


def process_cpu(pid: int) -> float:
    """utime + stime of a process, in seconds (/proc/<pid>/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (a cluster's workers are its sentinel's children)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return []
    return [pid, *(below for child in children for below in descendants(int(child)))]


def own_cpu() -> float:
    """CPU seconds of this process (all its threads) and its waited-for children (curl)."""
    return sum(getattr(resource.getrusage(who), field) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
               for field in ("ru_utime", "ru_stime"))


class ReceivingPortal:
    """A second portal: its own DATA_DIR (SQLite, downloads, uploads), gunicorn as `make run` starts it
    (2 workers x 4 threads)."""

    def __init__(self, work: Path):
        self.data = work / "receiving"
        self.port = free_ports(1)[0]
        self.env = {**os.environ, "DEBUG": "1", "DATA_DIR": str(self.data), "LOG_LEVEL": "WARNING",
                    "DOWNLOADS_DIR": str(self.data / "downloads"), "UPLOADS_DIR": str(self.data / "uploads")}
        self.env.pop("DJANGO_SETTINGS_MODULE", None)
        manage(self.env, "migrate", "--noinput")
        self.token = manage(self.env, "shell", stdin=(
            "from django.contrib.auth.models import User, Permission\n"
            "from rest_framework.authtoken.models import Token\n"
            "u = User.objects.create_user('sender', password='bench-pass-123')\n"
            "u.user_permissions.add(Permission.objects.get(codename='add_upload'))\n"
            "print(Token.objects.create(user=u).key)\n")).strip().splitlines()[-1]
        self.proc = subprocess.Popen([str(Path(sys.executable).parent / "gunicorn"), "pacsportal.wsgi",
                                      "-b", f"127.0.0.1:{self.port}", "-w", "2", "--threads", "4",
                                      "--timeout", "120"],
                                     env=self.env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # its worker: the receiving end unpacks each upload off the request (django-q), the sender waits
        self.worker = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "qcluster"], env=self.env, cwd=ROOT,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while not port_open(self.port):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("the receiving portal did not start")
            time.sleep(0.1)
        self.url = f"http://127.0.0.1:{self.port}"

    def cpu(self) -> float:
        """CPU seconds of gunicorn and its workers, and of the unpacking cluster and its workers, so far."""
        return sum(process_cpu(pid) for parent in (self.proc.pid, self.worker.pid) for pid in descendants(parent))

    def received(self) -> int:
        return sum(1 for _ in (self.data / "downloads").rglob("*.dcm"))

    def reset(self) -> None:
        shutil.rmtree(self.data / "downloads", ignore_errors=True)

    def stop(self) -> None:
        for process in (self.proc, self.worker):
            process.terminate()
        for process in (self.proc, self.worker):
            process.wait(30)


def configure_django(work: Path) -> None:
    os.environ.update({"DEBUG": "1", "DJANGO_SETTINGS_MODULE": "pacsportal.settings", "DATA_DIR": str(work / "sending"),
                       "DELIVERY_ZIP_DIR": str(work / "zips"), "LOG_LEVEL": "WARNING",
                       "TRUSTED_HTTP_HOSTS": "127.0.0.1"})  # the receiving portal: plain http on loopback
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)


def deliver(retrieval, target, mode: str, batch_size: int, project=None) -> float:
    """Run a delivery's batches in this process; returns the seconds."""
    from apps.delivery.models import DeliveryJob
    from apps.jobs.runner import run_item

    job = DeliveryJob.for_retrieval(retrieval, target, mode=mode, batch_size=batch_size, clear=False, project=project)
    started = time.monotonic()
    for batch in job.items.order_by("number"):
        if run_item(batch._meta.label, batch.pk, continue_with_job=False) != "succeeded":
            batch.refresh_from_db()
            raise RuntimeError(f"{mode} batch {batch.number} failed: {batch.error}")
    return time.monotonic() - started


def curl_upload(portal: ReceivingPortal, zips: list[Path]) -> float:
    """The reference: create each upload (not timed), then one streaming `curl -T` PATCH per zip."""
    import httpx

    headers = {"Authorization": f"Token {portal.token}", "Tus-Resumable": "1.0.0"}
    urls = []
    for path in zips:
        import base64

        name = base64.b64encode(f"curl-{path.name}".encode()).decode()
        created = httpx.post(f"{portal.url}/api/uploads/", headers={
            **headers, "Upload-Length": str(path.stat().st_size), "Upload-Metadata": f"filename {name}"})
        urls.append(created.headers["Location"])
    started = time.monotonic()
    for path, url in zip(zips, urls):
        done = subprocess.run(["curl", "-sS", "-f", "-X", "PATCH", "-T", str(path), url,
                               "-H", f"Authorization: Token {portal.token}", "-H", "Tus-Resumable: 1.0.0",
                               "-H", "Upload-Offset: 0", "-H", "Content-Type: application/offset+octet-stream",
                               "-H", "Expect:"], capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"curl failed: {done.stderr}")
    elapsed = time.monotonic() - started
    for url in urls:
        state = httpx.get(url, headers=headers).json()["state"]
        if state != "unpacked":
            raise RuntimeError(f"curl upload ended {state}")
    return elapsed


def sender_upload(portal: ReceivingPortal, zips: list[Path], run: int) -> float:
    """The portal's tus sender alone on the very zips curl sends: the protocol against curl."""
    from django.conf import settings

    from apps.delivery.tus_client import TusSender

    started = time.monotonic()
    with TusSender(f"{portal.url}/api/uploads/", portal.token, chunk_size=settings.DELIVERY_CHUNK_BYTES) as sender:
        for path in zips:
            if sender.send(path, f"sender-{run}-{path.name}").state != "unpacked":
                raise RuntimeError("sender upload not unpacked")
    return time.monotonic() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=int, default=int(os.environ.get("MEGABYTES", 1000)))
    parser.add_argument("--repeat", type=int, default=int(os.environ.get("REPEAT", 3)))
    parser.add_argument("--batch-size", type=int, default=10, help="cases per batch")
    parser.add_argument("--no-direct", action="store_true", help="skip direct mode")
    parser.add_argument("--no-curl", action="store_true", help="skip the curl and tus-sender references")
    parser.add_argument("--project", action="store_true",
                        help="each portal variant again for a research project (de-identified delivery)")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bench-deliver-"))
    configure_django(work)
    from django.contrib.auth.models import User

    from apps.delivery.deliver import gather
    from apps.delivery.models import DeliveryBatch, DeliveryJob, DeliveryTarget
    from apps.delivery.zipstream import ZipStream
    from tests.delivery.conftest import make_retrieval

    cases = 20
    instances = max(1, round(args.megabytes / INSTANCE_MB / cases))
    print(f"generating {cases} cases x {instances} CT instances of 512x512 in {work}", file=sys.stderr)
    user = User.objects.create_user("bench")
    retrieval = make_retrieval(user, work / "source", work / "dataset", patients=cases // 2, studies=2,
                               instances=instances, rows=512)
    shutil.rmtree(work / "dataset")
    portal = ReceivingPortal(work)
    try:
        target = DeliveryTarget.objects.create(name="FAR", kind="portal", url=portal.url, token=portal.token)
        probe = DeliveryJob.for_retrieval(retrieval, target, batch_size=args.batch_size, start=False)
        zips = []
        for number, lines in enumerate(probe.plan, start=1):  # the zips the delivery will send, made once
            path = work / "reference" / f"batch-{number}.zip"
            path.parent.mkdir(exist_ok=True)
            ZipStream(gather(DeliveryBatch(job=probe, number=number, lines=lines)).entries).write_to(path)
            zips.append(path)
        os.sync()  # the reference zips are on disk before any clock starts
        megabytes = sum(p.stat().st_size for p in zips) / 1e6
        files = sum(1 for _ in (work / "source").rglob("*.dcm"))
        variants = {
            "curl -T (zips)": lambda run: curl_upload(portal, zips),
            "tus sender (same zips)": lambda run: sender_upload(portal, zips, run),
            "portal zip": lambda run: deliver(retrieval, target, "zip", args.batch_size),
            "portal direct": lambda run: deliver(retrieval, target, "direct", args.batch_size),
        }
        if args.no_direct:
            del variants["portal direct"]
        if args.project:
            from apps.projects.models import Project

            # allow_burned_in: the synthetic cases include ultrasound, which a project holds back by default;
            # the same files must arrive in both variants to compare their speed
            project = Project.objects.create(name="BENCH", options=["retain-longitudinal-dates"],
                                             allow_burned_in=True)
            for mode in ("zip", "direct"):
                if f"portal {mode}" in variants:
                    variants[f"portal {mode}, project"] = (
                        lambda run, mode=mode: deliver(retrieval, target, mode, args.batch_size, project))
        if args.no_curl:
            del variants["curl -T (zips)"], variants["tus sender (same zips)"]
        results = {name: [] for name in variants}  # (seconds, sender CPU, receiver CPU, load average)
        names = list(variants)
        for run in range(args.repeat):
            # each round starts with another variant: no variant is always first (or right after another)
            for name in names[run % len(names):] + names[:run % len(names)]:
                variant = variants[name]
                portal.reset()
                os.sync()  # each variant starts with no dirty pages from the one before
                cpu_here, cpu_there = own_cpu(), portal.cpu()
                seconds = variant(run)
                results[name].append((seconds, own_cpu() - cpu_here, portal.cpu() - cpu_there, os.getloadavg()[0]))
                if portal.received() != files:
                    raise RuntimeError(f"{name}: {portal.received()} files arrived, not {files}")
        reference = "curl -T (zips)" if "curl -T (zips)" in results else "portal zip"
        curl = statistics.median(r[0] for r in results[reference])
        print(f"\n{files} files, {megabytes:.0f} MB in {len(zips)} zips of {args.batch_size} cases; "
              f"2 shared cores, loopback\n")
        print(f"| variant | runs (s) | median (s) | MB/s | ratio to {reference} | CPU s sender / receiver (median) | "
              "load average (1 min) |\n|---|---|---|---|---|---|---|")
        for name, runs in results.items():
            median = statistics.median(r[0] for r in runs)
            sender, receiver = (statistics.median(r[i] for r in runs) for i in (1, 2))
            print(f"| {name} | {' '.join(f'{r[0]:.2f}' for r in runs)} | {median:.2f} | {megabytes / median:.0f} | "
                  f"{curl / median:.2f}x | {sender:.2f} / {receiver:.2f} | "
                  f"{' '.join(f'{r[3]:.1f}' for r in runs)} |")
        ratios = {name: [f"{c[0] / r[0]:.2f}x" for c, r in zip(results[reference], runs)]
                  for name, runs in results.items() if name != reference}
        print(f"\nratio to the {reference} run of the same round: "
              + "; ".join(f"{n}: {' '.join(v)}" for n, v in ratios.items()))
        for name, runs in results.items():
            if name.endswith(", project"):
                plain = results[name.removesuffix(", project")]
                each = [p[0] / r[0] for p, r in zip(plain, runs)]
                print(f"{name} vs plain, same round: {' '.join(f'{x:.2f}x' for x in each)} "
                      f"(median {statistics.median(each):.2f}x; of the medians "
                      f"{statistics.median(p[0] for p in plain) / statistics.median(r[0] for r in runs):.2f}x)")
    finally:
        portal.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
