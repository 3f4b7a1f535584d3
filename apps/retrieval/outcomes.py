"""What a row's retrieval brought: per study (or series) expected, received, quarantined, and the one
message that says what is missing or foreign, with numbers."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class StudyOutcome:
    study_instance_uid: str
    folder: Path
    expected: int | None
    received: int
    bytes: int
    failed_on_pacs: int = 0
    foreign: int = 0  # instances that arrived but were not part of the study: quarantined
    foreign_reasons: str = ""
    quarantine: str = ""
    series_instance_uid: str = ""  # when the study was moved series by series: this one's outcome
    withheld: int = 0  # instances of the study (of any of its parts) quarantined with the foreign ones, not filed
    not_filed: list = field(default_factory=list)  # a project's: (new SOP Instance UID, why) held back or refused
    kept: int = 0  # instances an earlier run filed, kept and not moved again (resume.py)
    kept_bytes: int = 0


@dataclass
class RowOutcome:
    studies: list[StudyOutcome] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (StudyInstanceUID, why) the row did not ask for
    found_on: dict = field(default_factory=dict)  # StudyInstanceUID -> the row's servers that have it, in order

    @property
    def expected(self) -> int:
        return sum(s.expected or 0 for s in self.studies)

    @property
    def received(self) -> int:
        return sum(s.received for s in self.studies)

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.studies)

    @property
    def kept(self) -> int:
        return sum(s.kept for s in self.studies)

    @property
    def kept_bytes(self) -> int:
        return sum(s.kept_bytes for s in self.studies)


def problems_message(server_name: str, line: int, outcome: RowOutcome) -> str | None:
    """None when exactly the expected instances of exactly the asked-for studies arrived; else the numbers."""
    parts = []
    for s in outcome.studies:
        what = f"series {s.series_instance_uid} of study {s.study_instance_uid}" if s.series_instance_uid else (
            f"study {s.study_instance_uid}")
        if s.expected is not None and s.received + s.withheld + s.kept < s.expected:
            parts.append(f"{what}: received {s.received + s.withheld} of {s.expected} instances"
                         + (f" ({s.failed_on_pacs} failed on the PACS side)" if s.failed_on_pacs else ""))
        if s.foreign:
            parts.append(f"{what}: {s.foreign} instances that are not part of it arrived "
                         f"({s.foreign_reasons}) and were quarantined in {s.quarantine}, not filed"
                         + (f", with the {s.withheld} of it that arrived alongside: nothing of it was filed"
                            if s.withheld else ""))
        elif s.withheld:  # a clean part of a study another part of which brought something foreign
            parts.append(f"{what}: its {s.withheld} instances were quarantined in {s.quarantine} with the "
                         "study's foreign arrivals, not filed")
        if s.not_filed:
            reasons = "; ".join(sorted({why for _, why in s.not_filed}))
            parts.append(f"{what}: {len(s.not_filed)} instances not filed for the research project ({reasons})")
    for uid, why in outcome.skipped:
        parts.append(f"{why} (study {uid}); it was skipped, not retrieved")
    if not parts:
        return None
    kept = " Files of the requested studies that arrived were kept." if outcome.received else ""
    return f"Line {line}, {server_name}: " + "; ".join(parts) + "." + kept
