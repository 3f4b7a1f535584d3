"""Where the files of each kind lie, for `catalog rebuild`: each app that files instances registers, in its
AppConfig.ready(), a function yielding a Claim per file it placed (the catalog imports none of them).
A claim names the path, the source, and the job and owner the filing recorded."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable


@dataclass(frozen=True)
class Claim:
    path: str
    source: str
    job_app: str = ""
    job_id: str = ""
    owner_id: int | None = None


_SOURCES: dict[str, Callable[[], Iterable[Claim]]] = {}


def register(name: str, claims: Callable[[], Iterable[Claim]]) -> None:
    _SOURCES[name] = claims


def registered() -> dict[str, Callable[[], Iterable[Claim]]]:
    return dict(_SOURCES)
