"""Case-list benchmark: lists of 1,000 and of 10,000 rows uploaded through the API to a real portal
(`manage.py qcluster` with its workers, `manage.py receive`) against a real Orthanc, each as a retrieval job
and as a query job. In a retrieval job the first row names a real study (5 instances, retrieved by C-MOVE)
and every other row matches nothing, so it costs one C-FIND; in a query job ("mode": "query") every row is
one C-FIND and its result recorded, nothing moved. The per-row cost is what is measured. Reference in the
same round: DCMTK `findscu` sending the same C-FINDs from one process on one association (the best a client
can do per row). Then the parsing of a 100,000-row .xlsx case list (as Excel writes one: shared strings,
date-styled serial numbers) into rows.

    .venv/bin/python bench/caselist.py [--rows 1000,10000] [--workers 2] [--rounds 3] [--modes retrieve,query]

Prints, per list and mode: medians over the rounds of rows/s (all rows; and C-FIND-only rows), findscu's
C-FINDs/s and the ratio (each round's ratio against that round's findscu; the median of those), the
workers' peak RSS, and the load average at each round's start; then the xlsx parse times. Writes the table
to bench/results/caselist-<date>.md.
"""
from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import shutil
import statistics
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
    urgent = UrgentRow(client, study, after_rows=max(1, rows // 10))
    while True:
        if first_files is None and target.exists() and sum(1 for p in target.rglob("*.dcm")) >= study["instances"]:
            first_files = time.monotonic() - t0
        urgent.poll(job_id)
        job = RetrievalJob.objects.get(pk=job_id)
        if job.status not in ("pending", "running") and first_files is not None and urgent.finished():
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
    return {"rows": rows, "answered": answered, "first_files": first_files, **urgent.figures(),
            "first_row": (wall_first - job.created_at).total_seconds(), "last_row": last,
            "rows_per_s": rows / last, "find_rows_per_s": (rows - 1) / span if span else float("inf"),
            "rss_mb": sampler.peak / 1024}


class UrgentRow:
    """A one-row urgent retrieval (the list's real study) started once `after_rows` rows of the running list
    are done, on the same workers: when its row starts and ends, counted from its POST (issue: within one
    JOB_SLICE_SECONDS plus the broker's poll)."""

    def __init__(self, client, study: dict, after_rows: int):
        self.client, self.study, self.after_rows = client, study, after_rows
        self.job_id = self.posted = None
        self.started = self.done = None

    def poll(self, list_job_id: int) -> None:
        from apps.retrieval.models import RetrievalItem

        if self.job_id is None:
            if RetrievalItem.objects.filter(job_id=list_job_id, finished_at__isnull=False).count() < self.after_rows:
                return
            self.posted = time.monotonic()
            response = self.client.post("/api/retrievals/", {"rows": [{"StudyInstanceUID": self.study[
                "StudyInstanceUID"], "Server": "ORTH"}], "urgent": True}, format="json")
            if response.status_code != 201:
                raise RuntimeError(f"urgent job refused: {response.status_code} {response.content[:300]!r}")
            self.job_id = response.json()["id"]
            self.created = RetrievalItem.objects.get(job_id=self.job_id).job.created_at
            return
        item = RetrievalItem.objects.get(job_id=self.job_id)
        if self.started is None and item.started_at:
            self.started = (item.started_at - self.created).total_seconds()
        if self.done is None and item.status not in ("pending", "running"):
            if item.status != "succeeded":
                raise RuntimeError(f"the urgent row ended {item.status}: {item.error}")
            self.done = (item.finished_at - self.created).total_seconds()

    def finished(self) -> bool:
        return self.done is not None

    def figures(self) -> dict:
        return {"urgent_started": self.started, "urgent_done": self.done}


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


def xlsx_parse_seconds(rows: int, rounds: int) -> list[tuple[float, float]]:
    """(xlsx to CSV, CSV to rows) seconds of a `rows`-row workbook written as Excel writes one."""
    import datetime as dt

    from apps.retrieval.caselist import parse_case_list
    from apps.retrieval.spreadsheet import workbook_to_csv
    from tests.retrieval.xlsx import excel_like

    data = excel_like([["PatientID", "StudyDate", "Modality", "Server"]] +
                      [[f"{n:08d}", dt.date(2024, 1, 1) + dt.timedelta(days=n % 365), "CT", "ORTH"]
                       for n in range(rows)])
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        text = workbook_to_csv(data)
        converted = time.perf_counter() - started
        parsed = parse_case_list(text, {"ORTH"})
        times.append((converted, time.perf_counter() - started - converted))
        if len(parsed.rows) != rows or parsed.errors:
            raise RuntimeError(f"xlsx: {len(parsed.rows)} rows, {len(parsed.errors)} errors")
    return times


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", default=os.environ.get("ROWS", "1000,10000"))
    parser.add_argument("--workers", type=int, default=int(os.environ.get("Q_WORKERS", 2)))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", default="retrieve,query", help="retrieve, query or both")
    parser.add_argument("--xlsx-rows", type=int, default=100_000, help="0 leaves the xlsx parse out")
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.rows.split(",") if n]
    modes = [m for m in args.modes.split(",") if m]

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
    results, loads = [], []
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
        for round_number in range(1, args.rounds + 1):
            loads.append(load())
            for rows in sizes:
                for mode in modes:
                    reference = findscu_rate(orthanc, rows, work)
                    print(f"round {round_number}, {rows} rows, {mode}: findscu {reference:.0f} C-FINDs/s; "
                          f"load {load()}", file=sys.stderr)
                    result = (run_query_list(rows, study, client, cluster.pid) if mode == "query"
                              else run_list(rows, study, client, Path(settings.DOWNLOADS_DIR), cluster.pid))
                    result.update(findscu_per_s=reference, mode=mode, round=round_number)
                    results.append(result)
                    print(result, file=sys.stderr)
    finally:
        if cluster is not None:
            cluster.terminate()
            cluster.wait(60)
        if receiver is not None:
            receiver.stop()
        orthanc.stop()
    xlsx = xlsx_parse_seconds(args.xlsx_rows, args.rounds) if args.xlsx_rows else []
    report = render(results, loads, xlsx, args)
    print(report)
    out = ROOT / "bench" / "results" / f"caselist-{dt.date.today():%Y%m%d}.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(report)
    return 0


def render(results: list[dict], loads: list[str], xlsx: list, args) -> str:
    median = statistics.median
    lines = [f"# Case-list benchmark {dt.datetime.now():%Y-%m-%d %H:%M}", "",
             f"{args.rounds} rounds, medians; load average (1, 5, 15 min) at each round's start: "
             f"{'; '.join(loads)}. Orthanc on loopback; {args.workers} workers, SQLite, ORM broker; "
             f"{os.cpu_count()} CPUs (shared machine).", "",
             "| job | rows | upload answered (s) | last row done (s) | rows/s | C-FIND rows/s | findscu C-FINDs/s | "
             "ratio (runs) | worker peak RSS (MB) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for mode in dict.fromkeys(r["mode"] for r in results):
        for rows in dict.fromkeys(r["rows"] for r in results):
            runs = [r for r in results if r["mode"] == mode and r["rows"] == rows]
            ratios = [r["find_rows_per_s"] / r["findscu_per_s"] for r in runs]
            lines.append(
                f"| {mode} | {rows} | {median(r['answered'] for r in runs):.2f} | "
                f"{median(r['last_row'] for r in runs):.1f} | {median(r['rows_per_s'] for r in runs):.0f} | "
                f"{median(r['find_rows_per_s'] for r in runs):.0f} | {median(r['findscu_per_s'] for r in runs):.0f} | "
                f"**{median(ratios):.2f}x** ({', '.join(f'{x:.2f}' for x in ratios)}) | "
                f"{max(r['rss_mb'] for r in runs):.0f} |")
    urgent = [r for r in results if r.get("urgent_started") is not None]
    if urgent:
        from django.conf import settings

        starts = ", ".join(f"{r['urgent_started']:.2f}" for r in urgent)
        lines += ["", f"Urgent one-row retrieval started while a list of {urgent[0]['rows']:,}+ rows ran (after a "
                  f"tenth of its rows), on the same workers: its row started {median(r['urgent_started'] for r in urgent):.2f} s "
                  f"after its job was created (median; runs {starts}), "
                  f"done after {median(r['urgent_done'] for r in urgent):.2f} s; the bound is JOB_SLICE_SECONDS "
                  f"{settings.JOB_SLICE_SECONDS:g} s + the broker's poll {settings.Q_CLUSTER['poll']:g} s."]
    if xlsx:
        lines += ["", f"xlsx case list of {args.xlsx_rows:,} rows (shared strings, date-styled serials) into rows: "
                  f"median {median(a + b for a, b in xlsx):.2f} s (xlsx to CSV {median(a for a, _ in xlsx):.2f} s, "
                  f"CSV to rows {median(b for _, b in xlsx):.2f} s; runs "
                  f"{', '.join(f'{a + b:.2f}' for a, b in xlsx)} s)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
