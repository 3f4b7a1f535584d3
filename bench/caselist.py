"""Case-list benchmark: a list of 1,000 and of 10,000 rows uploaded through the API to a real portal
(`manage.py qcluster` with its workers, `manage.py receive`) against a real Orthanc. The first row names
a real study (5 instances, retrieved by C-MOVE); every other row matches nothing, so it costs one C-FIND:
the per-row overhead is what is measured. Reference in the same run: DCMTK `findscu` sending the same
C-FINDs from one process on one association (the best a client can do per row).

    .venv/bin/python bench/caselist.py [--rows 1000,10000] [--workers 2] [--query]

With --query the lists run as query jobs ("mode": "query": every row one C-FIND, nothing moved; the first
row finds the study, the others are flagged) and the table gives their rows/s against findscu's.

Prints, per list: the upload's answer time, when the first row's files were on disk, when the last row
finished, rows/s (all rows; and C-FIND-only rows), the workers' peak RSS, and the ratio to findscu.
Writes the table to bench/results/caselist-<date>.md.
"""
from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from retrieve import DCMTK_ENV, PORTAL_AE, Receiver, configure_django  # noqa: E402

from bench.publish import scratch  # noqa: E402
from tests.pacs import Orthanc, free_ports  # noqa: E402

NO_MATCH_DATE = "2024-01-02"


def rss_tree_kb(root_pid: int) -> dict[int, int]:
    """VmRSS (kB) of root_pid and every process below it, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = {}, [root_pid]
    while todo:
        pid = todo.pop()
        try:
            status = (Path("/proc") / str(pid) / "status").read_text()
        except OSError:
            continue
        found[pid] = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
        todo += children.get(pid, [])
    return found


class RssSampler(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak, self.done = pid, 0, threading.Event()

    def run(self):
        while not self.done.wait(0.25):
            sizes = rss_tree_kb(self.pid)
            sizes.pop(self.pid, None)  # the cluster's own launcher; its workers are the children
            if sizes:
                self.peak = max(self.peak, max(sizes.values()))


def case_list(rows: int, study: dict) -> str:
    lines = ["PatientID,StudyDate,Modality,Server",
             f"{study['PatientID']},{study['StudyDate'][:4]}-{study['StudyDate'][4:6]}-{study['StudyDate'][6:]},CT,ORTH"]
    lines += [f"NOMATCH{n:06d},{NO_MATCH_DATE},CT,ORTH" for n in range(2, rows + 1)]
    return "\n".join(lines) + "\n"


def findscu_rate(orthanc: Orthanc, rows: int, work: Path) -> float:
    """C-FINDs per second of one findscu process sending `rows` study queries on one association."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    folder = work / f"queries-{rows}"
    folder.mkdir(exist_ok=True)
    paths = []
    for n in range(rows):
        ds = Dataset()
        ds.QueryRetrieveLevel, ds.PatientID, ds.StudyDate = "STUDY", f"NOMATCH{n:06d}", "20240102"
        ds.ModalitiesInStudy, ds.StudyInstanceUID, ds.NumberOfStudyRelatedInstances = "CT", "", ""
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = folder / f"q{n}.dcm"
        ds.save_as(path, enforce_file_format=False)
        paths.append(str(path))
    started = time.monotonic()
    done = subprocess.run(["findscu", "-S", "-aet", "BENCHFIND", "-aec", orthanc.aet, "127.0.0.1",
                           str(orthanc.dicom_port), *paths], env=DCMTK_ENV, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"findscu failed: {done.stderr[-1000:]}")
    return rows / elapsed


def run_list(rows: int, study: dict, client, downloads: Path, cluster_pid: int) -> dict:
    from apps.retrieval.models import RetrievalItem, RetrievalJob

    shutil.rmtree(downloads, ignore_errors=True)  # the first row's files must be this run's
    upload = io.BytesIO(case_list(rows, study).encode())
    upload.name = f"bench-{rows}.csv"
    sampler = RssSampler(cluster_pid)
    sampler.start()
    t0 = time.monotonic()
    response = client.post("/api/retrievals/", {"file": upload}, format="multipart")
    answered = time.monotonic() - t0
    if response.status_code != 201:
        raise RuntimeError(f"upload refused: {response.status_code} {response.content[:500]!r}")
    job_id, first_files = response.json()["id"], None
    target = downloads / "ORTH"
    while True:
        if first_files is None and target.exists() and sum(1 for p in target.rglob("*.dcm")) >= study["instances"]:
            first_files = time.monotonic() - t0
        job = RetrievalJob.objects.get(pk=job_id)
        if job.status not in ("pending", "running") and first_files is not None:
            break
        if time.monotonic() - t0 > 3600:
            raise RuntimeError("the job did not finish within an hour")
        time.sleep(0.05)
    sampler.done.set()
    items = RetrievalItem.objects.filter(job_id=job_id)
    finished = sorted(items.values_list("finished_at", flat=True))
    first_row = items.get(line=2)
    wall_first = first_row.finished_at
    span = (finished[-1] - finished[0]).total_seconds()
    last = (finished[-1] - job.created_at).total_seconds()
    counts = job.progress()
    if counts["total"] != rows or counts["succeeded"] != 1 or counts["failed"] != rows - 1:
        raise RuntimeError(f"unexpected outcome: {counts}")
    return {"rows": rows, "answered": answered, "first_files": first_files,
            "first_row": (wall_first - job.created_at).total_seconds(), "last_row": last,
            "rows_per_s": rows / last, "find_rows_per_s": (rows - 1) / span if span else float("inf"),
            "rss_mb": sampler.peak / 1024}


def run_query_list(rows: int, study: dict, client, cluster_pid: int) -> dict:
    """A query job of the same list: every row one C-FIND and its result recorded, nothing moved."""
    from apps.retrieval.models import FoundStudy, RetrievalItem, RetrievalJob

    upload = io.BytesIO(case_list(rows, study).encode())
    upload.name = f"bench-query-{rows}.csv"
    sampler = RssSampler(cluster_pid)
    sampler.start()
    t0 = time.monotonic()
    response = client.post("/api/retrievals/", {"file": upload, "mode": "query"}, format="multipart")
    answered = time.monotonic() - t0
    if response.status_code != 201:
        raise RuntimeError(f"upload refused: {response.status_code} {response.content[:500]!r}")
    job_id = response.json()["id"]
    while RetrievalJob.objects.get(pk=job_id).status in ("pending", "running"):
        if time.monotonic() - t0 > 3600:
            raise RuntimeError("the job did not finish within an hour")
        time.sleep(0.05)
    sampler.done.set()
    job = RetrievalJob.objects.get(pk=job_id)
    items = RetrievalItem.objects.filter(job_id=job_id)
    finished = sorted(items.values_list("finished_at", flat=True))
    found = list(FoundStudy.objects.filter(item__job_id=job_id).values_list("study_instance_uid", flat=True))
    flagged = items.exclude(flag="").count()
    if found != [study["StudyInstanceUID"]] or flagged != rows - 1 or job.progress()["succeeded"] != rows:
        raise RuntimeError(f"unexpected outcome: found {found}, {flagged} flagged, {job.progress()}")
    last = (finished[-1] - job.created_at).total_seconds()
    span = (finished[-1] - finished[0]).total_seconds()
    return {"rows": rows, "answered": answered, "first_files": 0.0, "first_row": 0.0, "last_row": last,
            "rows_per_s": rows / last, "find_rows_per_s": (rows - 1) / span if span else float("inf"),
            "rss_mb": sampler.peak / 1024}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default=os.environ.get("ROWS", "1000,10000"))
    parser.add_argument("--workers", type=int, default=int(os.environ.get("Q_WORKERS", 2)))
    parser.add_argument("--query", action="store_true", help="run the lists as query jobs (nothing moved)")
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.rows.split(",") if n]

    work = scratch("caselist")
    (receiver_port,) = free_ports(1)
    env = configure_django(work, receiver_port)
    env["Q_WORKERS"] = str(args.workers)
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from rest_framework.test import APIClient

    from apps.dicom.demo.synthetic import write_dataset
    from apps.servers.models import DicomServer

    manifest = write_dataset(work / "dataset", patients=1, studies=1, series=1, instances=5, modalities=("CT",),
                             seed=3, id_prefix="BENCHCL", first_date="2023-06-01")
    study = {**manifest["studies"][0], "instances": 5}
    orthanc = Orthanc(work / "orthanc").start()
    receiver = cluster = None
    try:
        orthanc.load(work / "dataset")
        orthanc.add_modality(PORTAL_AE, PORTAL_AE, receiver_port)
        peer = orthanc.peer()
        DicomServer.objects.create(name="ORTH", ae_title=peer.ae_title, host=peer.host, port=peer.port, retries=0,
                                   max_associations=args.workers)
        user = get_user_model().objects.create_superuser("bench", password="bench-pass-123", email="")
        client = APIClient(SERVER_NAME="localhost")
        client.force_authenticate(user)
        receiver = Receiver(env)
        cluster_log = open(work / "cluster.log", "wb")
        print(f"workers log to {work / 'cluster.log'}", file=sys.stderr)
        cluster = subprocess.Popen([sys.executable, str(ROOT / "manage.py"), "qcluster"], env=env, cwd=ROOT,
                                   stdout=cluster_log, stderr=subprocess.STDOUT, start_new_session=True)
        time.sleep(3)  # the cluster's workers start
        results = []
        for rows in sizes:
            reference = findscu_rate(orthanc, rows, work)
            print(f"{rows} rows: findscu {reference:.0f} C-FINDs/s; uploading", file=sys.stderr)
            result = (run_query_list(rows, study, client, cluster.pid) if args.query
                      else run_list(rows, study, client, Path(settings.DOWNLOADS_DIR), cluster.pid))
            result["findscu_per_s"] = reference
            results.append(result)
            print(result, file=sys.stderr)
    finally:
        if cluster is not None:
            cluster.terminate()
            cluster.wait(60)
        if receiver is not None:
            receiver.stop()
        orthanc.stop()
    lines = [f"# Case-list benchmark {dt.datetime.now():%Y-%m-%d %H:%M}", "",
             ("Query jobs: every row one C-FIND and its result recorded, nothing moved; the first row finds a "
              "study. " if args.query else "") +
             f"Rows matching nothing (one C-FIND each) after one row retrieving a 5-instance study; Orthanc on "
             f"loopback; {args.workers} workers, SQLite, ORM broker; {os.cpu_count()} CPUs (shared machine).", "",
             "| rows | upload answered (s) | first row's files on disk (s) | last row done (s) | rows/s | "
             "C-FIND rows/s | findscu C-FINDs/s | ratio | worker peak RSS (MB) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['rows']} | {r['answered']:.2f} | {r['first_files']:.2f} | {r['last_row']:.1f} | "
                     f"{r['rows_per_s']:.0f} | {r['find_rows_per_s']:.0f} | {r['findscu_per_s']:.0f} | "
                     f"{r['find_rows_per_s'] / r['findscu_per_s']:.2f}x | {r['rss_mb']:.0f} |")
    report = "\n".join(lines) + "\n"
    print(report)
    out = ROOT / "bench" / "results" / f"caselist{'-query' if args.query else ''}-{dt.date.today():%Y%m%d}.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
