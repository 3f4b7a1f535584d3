"""A study is filed whole or not at all, also when its series are moved in parallel as parts of their own
(moves.py): if anything foreign arrives with any part, nothing of the study reaches the downloads folder.

Design: nothing of a study goes into its case folder before its last part has been checked. A clean part
whose siblings are still moving is filed into the study's hold (a folder in staging, so a rename), and
the last part, when every part was clean, files the hold and itself into the case folder in one
file_into. The first part that brings something foreign opens the study's quarantine, moves the hold
there (as withheld) and every later part of the study goes there too. Each decision (hold, commit, or
quarantine) and the file moves it makes happen under one lock, so a part being filed while a sibling is
found tainted is either already in the hold, and is taken to the quarantine with it, or finds the study
tainted: no order of parts lets an instance of a tainted study reach the case folder, and the case folder
never holds a part of a study that may still turn out tainted. A part whose move failed or was stopped because
a sibling failed is settled with what arrived of it (retrieve.py), so a study whose parts were all clean is
committed with what came, and its retry moves only the rest (resume.py); a row canceled by its user settles
nothing, and a study whose parts do not all settle is never committed: its hold goes with the row's staging.
"""
from __future__ import annotations

import shutil
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from apps.retrieval.arrivals import WITHHELD, Arrivals, quarantine
from apps.retrieval.layout import file_into
from apps.retrieval.outcomes import StudyOutcome

HOLD = ".hold"  # in the staging root: no AE title's staging folder can be named so (staging.safe_ae)


@dataclass
class _Study:
    parts_left: int
    hold: Path
    held: list[Path] = field(default_factory=list)  # files of the study's clean parts, in the hold
    held_outcomes: list[StudyOutcome] = field(default_factory=list)
    quarantine: Path | None = None  # once a part brought something foreign: where all of the study goes


class StudyHolds:
    """The studies of one row run: how many parts each has left, and where their checked parts wait."""

    def __init__(self, hold_root: Path, quarantine_name):
        self.root, self._quarantine_name = hold_root, quarantine_name
        self._parts: Counter = Counter()
        self._studies: dict[str, _Study] = {}
        self._lock = threading.Lock()

    def expect(self, plans) -> None:
        """More parts the row will move (a row searched on several servers tells each server's): a study is
        committed once this many of its parts were checked."""
        self._parts.update(plan.uid for plan in plans)

    def settle(self, plan, arrivals: Arrivals, target: Path, *, commit=None, **outcome) -> StudyOutcome:
        """Hold, file or quarantine one checked part of a study (see the module's note); its outcome.
        `commit(paths, movable)` files the whole study into `target` (default: file_into; a research
        project's row de-identifies as it files). Raises FilingFailed when filing into the hold or the case
        folder fails (nothing of it kept)."""
        with self._lock:
            study = self._studies.get(plan.uid)
            if study is None:
                study = self._studies[plan.uid] = _Study(self._parts[plan.uid] or 1,
                                                          self.root / uuid.uuid4().hex[:12])
            if arrivals.foreign and study.quarantine is None:
                study.quarantine = Path(self._quarantine_name())
                if study.held:  # parts checked earlier: taken back out of the hold
                    quarantine([(path, WITHHELD) for path in study.held], study.quarantine)
                for held in study.held_outcomes:
                    held.withheld, held.received, held.bytes = held.received, 0, 0
                    held.quarantine = str(study.quarantine)
                study.held, study.held_outcomes = [], []
            study.parts_left -= 1
            # a part's own folder (nobody else writes into it) may become the hold or, with the hold, the case folder whole
            own_folder = [arrivals.folder] if arrivals.folder else []
            if study.quarantine is not None:
                quarantine(arrivals.foreign + [(path, WITHHELD) for path in arrivals.matching], study.quarantine)
                return StudyOutcome(plan.uid, target, plan.expected, 0, 0, foreign=len(arrivals.foreign),
                                    foreign_reasons=arrivals.reasons(), quarantine=str(study.quarantine),
                                    withheld=len(arrivals.matching), **outcome)
            if study.parts_left > 0:
                held = file_into(study.hold, arrivals.matching, own_folder)
                study.held += held.paths
                result = StudyOutcome(plan.uid, target, plan.expected, len(arrivals.matching), held.bytes, **outcome)
                study.held_outcomes.append(result)
                return result
            movable = ([study.hold] if study.held else []) + own_folder
            filed = (commit or (lambda paths, movable: file_into(target, paths, movable)))(
                study.held + arrivals.matching, movable)
            study.held = []
            own = filed.bytes - sum(o.bytes for o in study.held_outcomes)
            return StudyOutcome(plan.uid, target, plan.expected, len(arrivals.matching), own,
                                not_filed=getattr(filed, "not_filed", []), **outcome)

    def remove(self) -> None:
        """The holds of studies never committed (a part failed or the row stopped) go with the row. A row
        that settled no study made none (most rows of a long list find nothing)."""
        if self._studies:
            shutil.rmtree(self.root, ignore_errors=True)
