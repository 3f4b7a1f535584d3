"""One case-list row, end to end: C-FIND the studies it names, keep only those that match the row exactly,
C-MOVE (to our receiver) or C-GET each, check what arrived against what was asked for, and file it into the
download layout.

Integrity: each C-MOVE carries a move key drawn at random and held in the database while it runs
(models.MoveKey), so its instances land in a staging folder of their own that nobody can guess into; what
arrived is checked (arrivals.py) and anything not part of the study is quarantined, never filed, and with it
the whole study, also the parts of it moved on other associations (holding.py). Less than expected and more
than expected are both failures with numbers.

A row is idempotent: every move stages into a fresh folder and filing replaces same-named files, so a row
re-run after a crash or a retry finishes without duplicates; and it moves only what its studies' case folders
lack (resume.py). A part whose move fails still has what arrived of it checked and settled, so the clean
parts of a study are filed and its retry moves the rest. A canceled row files nothing of the study in
flight and leaves no staging behind.
"""
from __future__ import annotations

import functools
import logging
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings

from apps.audit import record
from apps.catalog.filing import catalog_files, catalog_folder
from apps.dicom.deid_form import Deidentifying
from apps.dicom.errors import DicomTimeout, DimseFailure, RetrieveCanceled
from apps.dicom.scu import c_get, find_association
from apps.dicom.staging import VERBATIM, AnsweredWrites, MoveStaging
from apps.jobs.errors import ItemCanceled, ItemFailed, ItemTimedOut
from apps.retrieval.arrivals import arrival_folder, foreign_reason, sort_arrivals
from apps.retrieval.attempts import record_attempt
from apps.retrieval.deidentified import EarlyDeidentifier, deidentified_folder
from apps.retrieval.early_entries import EarlyEntries, noting_entry, read_early
from apps.retrieval.fanout import names_of, row_servers
from apps.retrieval.holding import HOLD, StudyHolds
from apps.retrieval.layout import FilingFailed, file_into, study_folder
from apps.retrieval.leftovers import clear_earlier_runs, clear_expired_moves, require_writable
from apps.retrieval.moves import extra_slots, move_parts, series_parts, wait_for_staged
from apps.retrieval.outcomes import RowOutcome, StudyOutcome, problems_message
from apps.retrieval.plans import StudyPlan, list_instances, modality_label, plan_for, row_mismatch, row_query
from apps.retrieval.resume import filed_instances, missing_parts
from apps.retrieval.series import nothing_chosen, series_plans
from apps.servers.models import DicomServer, local_ae

if TYPE_CHECKING:
    from apps.jobs.context import ItemContext
    from apps.projects.pseudonymize import Pseudonymizer
    from apps.retrieval.models import RetrievalItem

log = logging.getLogger(__name__)


@dataclass
class RowRetrieval:
    """What fetching one row's studies needs: the row, its worker context, where instances are staged,
    quarantined and filed, and what has arrived so far."""

    item: RetrievalItem
    ctx: ItemContext
    staging: MoveStaging
    downloads: Path
    outcome: RowOutcome = field(default_factory=RowOutcome)
    holds: StudyHolds = None  # where checked parts of a study wait for its other parts (holding.py)
    pseudonymizer: Pseudonymizer | None = None  # a research project's job: filed de-identified
    server: DicomServer | None = None  # the server being fetched from (a row may search several): its folder
    chosen_any: bool = False  # a row choosing series: whether any study had a series it chose
    prepared: bool = False
    early_entries: dict = field(default_factory=dict)  # staged name -> catalog values read during its move

    def prepare(self, local_ae_title: str) -> None:
        """Before the row's first move, once: the folders can take files, and what dead runs left staged is
        gone. A row that finds nothing (most rows of a long list) needs none of it."""
        if not self.prepared:
            require_writable(self.staging.root, "staging folder")
            require_writable(self.downloads, "downloads folder")
            clear_earlier_runs(self.item, self.staging, local_ae_title)
            clear_expired_moves(self.staging, local_ae_title)
            self.prepared = True

    def __post_init__(self):
        if self.server is None:
            self.server = self.item.dicom_server
        if self.holds is None:
            item = self.item
            self.holds = StudyHolds(self.staging.root / HOLD / f"{item.pk}-{uuid.uuid4().hex}", lambda: (
                Path(settings.QUARANTINE_DIR) / f"retrieval-{item.job_id}-{item.pk}-{uuid.uuid4().hex[:8]}"))

    def fetch(self, plan: StudyPlan, folder: Path, retrieve, list_instances, *, wait_for_receiver: bool) -> None:
        """Retrieve one study (`retrieve`: a C-MOVE to our receiver or a C-GET, staging into the fresh
        `folder`), then check and file what arrived. `folder` is removed afterwards, whatever happened."""
        if self.ctx.should_stop():
            raise ItemCanceled()
        early = self._early(plan, folder)
        # a C-MOVE's row thread only waits meanwhile: the headers of what the receiver staged are read then
        reading = EarlyEntries(folder, self.early_entries).__enter__() if wait_for_receiver and early is None else None
        try:
            try:
                result = retrieve(plan.move_query()[1])
            except RetrieveCanceled:
                if not self.ctx.should_stop():  # stopped because a part beside it failed: keep what came
                    self._settle_what_arrived(plan, folder, early)
                raise ItemCanceled() from None
            except DicomTimeout as exc:
                self._settle_what_arrived(plan, folder, early)
                raise ItemTimedOut(f"{exc} Raise the timeout (job or server) for large studies.") from exc
            except DimseFailure as exc:  # a PACS gives up a move when we refuse an instance: say why we did
                self._fail_if_unwritten(plan, folder)
                log.info("line %s, %s: the retrieve failed on the PACS: %s", self.item.line, self.server.name,
                         exc)
                self._settle_what_arrived(plan, folder, early)
                raise
            except ItemFailed:  # our receiver was down or full while the PACS sent: keep what it had written
                self._settle_what_arrived(plan, folder, early)
                raise
            wait = wait_for_receiver and plan.expected is not None
            staged = wait_for_staged(self.staging, folder, plan.expected, plan.sops) if wait else (
                self.staging.instances(folder))
            self._fail_if_unwritten(plan, folder)
            if reading is not None:
                reading.stop()
            if not wait_for_receiver:  # a C-GET's folder: this thread's alone, its writes over
                self.staging.writes_over(folder)
            self._file(plan, folder, staged, result, list_instances, wait, early, own_folder=not wait_for_receiver)
        finally:
            if reading is not None:
                reading.stop()
            if early is not None:
                early.__exit__(None, None, None)
            self.staging.remove(folder)

    def _settle_what_arrived(self, plan: StudyPlan, folder: Path, early) -> None:
        """A part whose move failed or was cut short: what arrived complete of it is checked and settled like
        any part (so the clean parts of its study are filed and a retry moves only the rest; anything foreign
        still quarantines the study). The move's own failure is what the caller raises: a failure here is
        logged, not raised in its place."""
        try:
            self._file(plan, folder, self.staging.instances(folder), None, lambda *_: plan.sops, False, early)
        except Exception as exc:  # noqa: BLE001 - the move's failure is the one to report
            log.info("line %s: what arrived of a failed move of study %s was not filed: %s", self.item.line,
                     plan.uid, exc)

    def fetch_in_turn(self, plans: list[StudyPlan], fetch_one) -> None:
        """`fetch_one(plan)` for each plan in order, then the first failure raised. A part the PACS refused
        (DimseFailure) leaves the next parts going; after any other failure the parts left are settled as
        having brought nothing, so the clean parts of their studies are committed and a retry moves the
        rest (resume.py). Not when the row was stopped, nor for a project's row, whose parts are committed
        only de-identified, by a move's own de-identifier: they raise at once."""
        first, stopped = None, False
        for plan in plans:
            if stopped:
                self._settle_what_arrived(plan, self.staging.root / "c-get" / "never-started", None)
                continue
            try:
                fetch_one(plan)
            except BaseException as exc:
                if self.ctx.should_stop() or self.pseudonymizer is not None or isinstance(exc, ItemCanceled):
                    raise
                first, stopped = first or exc, not isinstance(exc, DimseFailure)
        if first is not None:
            raise first

    def _early(self, plan: StudyPlan, folder: Path) -> EarlyDeidentifier | None:
        """For a project: de-identifying what lands while the move runs (its patient looked up already)."""
        if self.pseudonymizer is None:
            return None
        return EarlyDeidentifier(self.pseudonymizer, lambda: self.staging.instances(folder),
                                 self.staging.scratch(folder), known=[plan.patient_id]).__enter__()

    def _fail_if_unwritten(self, plan: StudyPlan, folder: Path) -> None:
        unwritten = self.staging.write_failure(folder)
        if unwritten:
            raise ItemFailed(f"The receiver could not write instances of study {plan.uid} into the staging "
                             f"folder ({unwritten}); nothing of it was filed. Fix the staging folder "
                             "(space, permissions), then retry the row.")

    def _file(self, plan: StudyPlan, folder: Path, staged: list[Path], result, list_instances, wait: bool,
              early: EarlyDeidentifier | None = None, own_folder: bool = False) -> None:
        item = self.item
        arrivals = sort_arrivals(folder, staged, plan.sops)
        if plan.sops is None and plan.expected is not None and len(arrivals.matching) > plan.expected:
            # More than the PACS said it holds: its own list of the study tells ours from the rest, and
            # the count no longer says whether the receiver has written all of ours yet.
            plan.sops = list_instances(plan.uid, plan.series_uid)
            if wait:
                staged = wait_for_staged(self.staging, folder, plan.expected, plan.sops)
            arrivals = sort_arrivals(folder, staged, plan.sops)
        arrivals.folder = folder if own_folder else None
        self.ctx.heartbeat()
        if self.ctx.should_stop():  # canceled, or another worker took the row over: file nothing
            raise ItemCanceled()
        study, commit = plan.study, None
        if early is not None:  # a project's: de-identified once, as the study is committed, under its values
            target = deidentified_folder(self.pseudonymizer, self.downloads, self.server.name, plan,
                                         modality_label(item, study))
            commit = early.committer(target)
        else:
            target = self.target_for(plan)
        filing, committed = commit or (lambda paths, movable: file_into(target, paths, movable)), []

        def commit_and_note(paths, movable):
            filed = filing(paths, movable)
            committed.append(filed)
            return filed
        try:  # all or nothing per study, over all its parts: with anything foreign, nothing of it is filed
            self.outcome.studies.append(self.holds.settle(plan, arrivals, target, commit=commit_and_note,
                                                          failed_on_pacs=getattr(result, "failed", 0),
                                                          series_instance_uid=plan.series_uid or ""))
        except FilingFailed as exc:
            log.info("cannot file a study of line %s into the downloads folder: %s", item.line, exc.reason)
            log.debug("cannot file into %s: %s", target, exc.reason)
            raise ItemFailed(f"Cannot file the study into {target} ({exc.reason}); {exc.what_stayed()}. Fix the "
                             "downloads folder, then retry the row.") from None
        for filed in committed:  # the study as filed, pseudonymized or not, as it is on disk
            placed = getattr(filed, "paths", None)
            if placed is not None:
                catalog_files(placed, source="retrieved", job=item.job, read=read_early(self.early_entries, placed))
                for path in placed:
                    self.early_entries.pop(path.name, None)
            else:  # a project's filing names its folders, not its files
                for folder in getattr(filed, "folders", None) or [target]:
                    catalog_folder(folder, source="retrieved", job=item.job)
        self.ctx.heartbeat(instances=self.outcome.received, bytes=self.outcome.bytes)

    def target_for(self, plan: StudyPlan) -> Path:
        """The case folder of a study (identified rows; a project's is named after its pseudonyms)."""
        study, item = plan.study, self.item
        return study_folder(self.downloads, self.server.name, str(study.get("StudyDate", "") or ""),
                            str(study.get("PatientID", item.patient_id) or item.patient_id),
                            modality_label(item, study))

    def present_of(self, plan: StudyPlan):
        """(case folder, instances of the study filed there already) for resuming a study."""
        folder = self.target_for(plan)
        return folder, filed_instances(folder, plan.uid)


def fetch_row(item, ctx, *, downloads: Path | None = None, staging_root: Path | None = None,
              outcome: RowOutcome | None = None) -> RowOutcome:
    """C-FIND the row's studies on each of its servers in order, then retrieve, check and file each that
    matches the row (a study found on an earlier server is not fetched again), moving only what its case
    folder lacks. `outcome` (given) holds what arrived even when this raises."""
    local = local_ae()
    staging = MoveStaging(staging_root or settings.STAGING_DIR)
    row = RowRetrieval(item, ctx, staging, Path(downloads or item.job.downloads_root()),
                       outcome=outcome if outcome is not None else RowOutcome(),
                       pseudonymizer=item.job.project.pseudonymizer() if item.job.project_id else None)
    servers, seen, answered = row_servers(item, ctx), set(), 0
    try:
        for server in servers:
            row.server = server
            answered += _fetch_from(row, server, local, seen)
    finally:
        row.holds.remove()
    if not answered:
        raise ItemFailed(f"No study on {names_of(servers)} matches line {item.line} ({item.describe()}).")
    if seen and item.chooses_series() and not row.chosen_any:
        why = nothing_chosen(item, names_of(servers), len(seen))
        raise ItemFailed(f"{why[:1].upper()}{why[1:]}; nothing was fetched.")
    return row.outcome


def _fetch_from(row: RowRetrieval, server: DicomServer, local, seen: set[str]) -> int:
    """The row's studies on one of its servers that no earlier server had (`seen`, extended), fetched; the
    number of studies the server answered."""
    item, ctx, staging = row.item, row.ctx, row.staging
    peer = server.as_peer(retrieve_timeout=item.job.timeout)
    c_move = server.retrieve_method != DicomServer.RetrieveMethod.C_GET
    stop = ctx.stop_requested
    # One association at a time per slot, so the server's association limit holds: the C-FINDs share one,
    # then the C-MOVEs (each on an association of its own, series in parallel on the extra slots a
    # server with max_associations > 1 has free) or the C-GET follow.
    with ctx.association_slot(server):
        with find_association(peer, local) as assoc:
            studies = assoc.find("STUDY", row_query(item))
            plans = _plans(row, assoc, studies, seen, parallel=c_move and server.max_associations > 1)
            if row.pseudonymizer is None:  # what an earlier run filed stays: move only the rest
                plans, kept = missing_parts(assoc, plans, row.present_of)
                row.outcome.studies += [StudyOutcome(k.study_instance_uid, k.folder, k.instances, 0, 0,
                                                     kept=k.instances, kept_bytes=k.bytes) for k in kept]
        if plans:
            row.prepare(local.ae_title)
        for plan in plans if row.pseudonymizer is not None else []:
            row.pseudonymizer.patient(plan.patient_id)  # the map looked up here, not in the moves' threads
        listed = functools.partial(_list_instances_alone, peer, local)  # the PACS's own list, when needed
        row.holds.expect(plans)
        if c_move:
            with extra_slots(ctx, server, min(server.max_associations, len(plans)) - 1) as extra:
                move_parts(row, plans, peer, local, pool=1 + extra, list_instances=listed)
        else:
            form = VERBATIM if row.pseudonymizer is None else Deidentifying(row.pseudonymizer.recipe,
                                                                            row.pseudonymizer.patient)

            def c_get_one(plan):
                folder = staging.root / "c-get" / f"{item.pk}-{uuid.uuid4().hex}"
                row.fetch(plan, folder, lambda query: _c_get_into(peer, local, query, folder, plan, stop, form,
                                                                  row.early_entries), listed, wait_for_receiver=False)

            row.fetch_in_turn(plans, c_get_one)
    return len(studies)


def _plans(row: RowRetrieval, assoc, studies, seen: set[str], *, parallel: bool) -> list[StudyPlan]:
    """What to move of the studies one server answered: each study that matches the row and was not found
    on an earlier server, whole, as its series (moved in parallel), or as the series the row chooses."""
    item, plans = row.item, []
    for study in studies:
        uid = str(study.get("StudyInstanceUID", ""))
        why = row_mismatch(item, study)
        if why:
            row.outcome.skipped.append((uid, why))
            continue
        row.outcome.found_on.setdefault(uid, []).append(row.server.name)
        if uid in seen:
            continue  # found on an earlier server of the row: fetched from there
        seen.add(uid)
        if item.chooses_series():
            chosen = series_plans(assoc, item, StudyPlan(study, None))
            row.chosen_any = row.chosen_any or bool(chosen)
            plans += chosen
            continue
        plan = plan_for(assoc, study)
        plans += series_parts(assoc, plan) if parallel else [plan]
    return plans


def _c_get_into(peer, local, query: dict, folder: Path, plan: StudyPlan, stop, form=VERBATIM, entries=None):
    """A C-GET of `query`, each instance staged into `folder` (apart, as it came, when it is not of the
    study, series or patient asked for; else in `form`) and written right after its answer, as the receiver
    does for a C-MOVE; every write is over when this returns. The catalog's values of what is staged as it
    came go into `entries` (staged name -> values, read_early's) on the way."""
    with AnsweredWrites() as writes:
        def on_instance(instance) -> int:
            reason = foreign_reason(instance, plan.uid, plan.series_uid or "", plan.patient_id)
            writes.take(instance, folder, arrival_folder(folder, reason), VERBATIM if reason else form)
            if entries is not None and not reason and form is VERBATIM and instance.after_answer is not None:
                instance.after_answer = noting_entry(instance, instance.after_answer, entries)
            return 0x0000

        return c_get(peer, local, query, on_instance, level=plan.move_query()[0], stop=stop)


def _list_instances_alone(peer, local, study_uid: str, series_uid: str | None = None) -> set[str]:
    with find_association(peer, local) as assoc:
        return list_instances(assoc, study_uid, series_uid)


def retrieve_row(item, ctx, **where) -> RowOutcome:
    """The whole row: fetch its studies, record on the item what arrived where and what this attempt
    fetched (also when it fails), audit it, and fail the item with numbers when anything expected is
    missing, anything foreign arrived, or the PACS answered studies the row did not ask for."""
    outcome = RowOutcome()
    try:
        fetch_row(item, ctx, outcome=outcome, **where)
    finally:
        record_attempt(item, ctx, outcome)
    uids = sorted({s.study_instance_uid for s in outcome.studies})
    if item.job.project_id:  # a project's job names the project's UIDs only
        uids = [item.job.project.recipe().uid(uid) for uid in uids]
    record(item.job.created_by, "study.retrieved", f"server:{item.server_name}", job=item.job_id,
           line=item.line, studies=uids, instances=item.instances,
           quarantined=sum(s.foreign for s in outcome.studies), skipped=len(outcome.skipped))
    problem = problems_message(item.server_name, item.line, outcome)
    if problem:
        raise ItemFailed(problem)
    return outcome
