"""Series a row chooses within its studies (SeriesDescription, SeriesModality, SeriesInstanceUID): the study's
series are listed with one SERIES-level C-FIND and chosen here, so a row's text never reaches the PACS as a
matching key (no wildcard, no PACS-specific matching). A value matches exactly (surrounding spaces aside), or,
with a leading '~', when the series' value contains the rest as plain text, without regard to case: '~ax.al'
matches only a description holding "ax.al"; there is no pattern syntax to escape or to abuse.

Each chosen series becomes a plan of its own (its SeriesInstanceUID and instance count: the PACS's
NumberOfSeriesRelatedInstances, or its IMAGE-level list), so only those series are moved and the row expects
their instances only."""
from __future__ import annotations

from dataclasses import replace

from pydicom.multival import MultiValue

from apps.retrieval.plans import StudyPlan, list_instances

SERIES_KEYS = {"SeriesInstanceUID": "", "SeriesDescription": "", "Modality": "", "SeriesNumber": "",
               "NumberOfSeriesRelatedInstances": ""}


def text_matches(wanted: str, value: str) -> bool:
    """Exact, or with a leading '~' a case-insensitive 'contains' of plain text."""
    value = (value or "").strip()
    if wanted.startswith("~"):
        return wanted[1:].strip().casefold() in value.casefold()
    return value == wanted.strip()


def _value(series, keyword: str) -> str:
    found = series.get(keyword, "")
    if isinstance(found, MultiValue):
        return "\\".join(str(v) for v in found).strip()
    return str("" if found is None else found).strip()


def is_chosen(item, series) -> bool:
    """Whether one SERIES-level C-FIND match is among the row's chosen series."""
    if item.series_instance_uid and _value(series, "SeriesInstanceUID") != item.series_instance_uid:
        return False
    if item.series_description and not text_matches(item.series_description, _value(series, "SeriesDescription")):
        return False
    if item.series_modality and not text_matches(item.series_modality, _value(series, "Modality")):
        return False
    return bool(_value(series, "SeriesInstanceUID"))


def series_of(assoc, study_uid: str) -> list:
    """The study's series as the PACS lists them (one C-FIND at SERIES level)."""
    return assoc.find("SERIES", {"StudyInstanceUID": study_uid, **SERIES_KEYS})


def chosen_series(assoc, item, study_uid: str) -> list:
    """The study's series the row chooses, each once, in the PACS's order."""
    chosen, seen = [], set()
    for series in series_of(assoc, study_uid):
        uid = _value(series, "SeriesInstanceUID")
        if is_chosen(item, series) and uid not in seen:
            seen.add(uid)
            chosen.append(series)
    return chosen


def count_of(series) -> int | None:
    value = _value(series, "NumberOfSeriesRelatedInstances")
    return int(value) if value.isdigit() else None


def series_plans(assoc, item, plan: StudyPlan) -> list[StudyPlan]:
    """One plan per chosen series of the study (none when the row chooses no series of it)."""
    plans = []
    for series in chosen_series(assoc, item, plan.uid):
        uid, count = _value(series, "SeriesInstanceUID"), count_of(series)
        if count is None:  # no count from the PACS: its own list of the series' instances says what to expect
            sops = list_instances(assoc, plan.uid, uid)
            plans.append(replace(plan, expected=len(sops), sops=sops, series_uid=uid))
        else:
            plans.append(replace(plan, expected=count, sops=None, series_uid=uid))
    return plans


def nothing_chosen(item, server_names: str, studies: int) -> str:
    """Why a row choosing series has nothing to fetch."""
    return (f"none of the series of the {studies} {'study' if studies == 1 else 'studies'} found on {server_names} "
            f"for line {item.line} matches{item.describe_series().removeprefix(', series with')}")
