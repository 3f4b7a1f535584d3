"""What retention lists and what a run did: the dry run's entries, and the outcome of removing them."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Candidate:
    category: str
    key: str  # unique within its category: a path, or "<model label>:<pk>"
    label: str  # what the admin page, the command and the audit trail show: no patient identifiers
    age_days: float
    bytes: int = 0
    rows: int = 0  # job records: the rows removed with it


@dataclass
class Outcome:
    removed: list[Candidate] = field(default_factory=list)
    kept: list[Candidate] = field(default_factory=list)  # no longer eligible when apply() reached them
    failed: list[tuple[Candidate, str]] = field(default_factory=list)
