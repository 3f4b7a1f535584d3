"""QIDO-RS searches over the catalog (PS3.18 10.6): matching (single value, wildcards * and ?, UID lists,
date ranges), limit/offset, includefield; each match as a DICOM JSON dataset. Only what the user may see is
searched (access.visible), so a wildcard never reaches another account's instances."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from django.conf import settings
from django.db.models import Count, Min, Q

from apps.catalog.models import Instance
from apps.dicom.query import QueryError, parse_study_date
from apps.dicomweb.attributes import (
    ATTRIBUTES,
    INSTANCE,
    INSTANCE_MATCH,
    SERIES,
    SERIES_MATCH,
    STUDY,
    STUDY_MATCH,
    dataset,
    keyword_of,
)

CONTROL = ("limit", "offset", "includefield", "fuzzymatching")
_UID_LIST = re.compile(r"^[0-9.]+([,\\][0-9.]+)*$")


class SearchError(ValueError):
    """A query parameter that cannot be used (a 400 naming it)."""


@dataclass
class Search:
    level: str  # studies | series | instances
    filters: Q = field(default_factory=Q)
    modalities: list[str] = field(default_factory=list)
    limit: int = 0
    offset: int = 0
    include: set[str] = field(default_factory=set)
    include_all: bool = False
    warnings: list[str] = field(default_factory=list)


def _wildcard(field_name: str, value: str, *, insensitive: bool = False) -> Q:
    if "*" not in value and "?" not in value:
        return Q(**{f"{field_name}__iexact" if insensitive else field_name: value})
    pattern = "^" + "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in value) + "$"
    return Q(**{f"{field_name}__{'iregex' if insensitive else 'regex'}": pattern})


def _number(params, name: str, default: int, *, low: int) -> int:
    text = params.get(name)
    if text in (None, ""):
        return default
    try:
        number = int(text)
    except ValueError:
        raise SearchError(f"{name} '{text[:40]}' is not a whole number") from None
    if number < low:
        raise SearchError(f"{name} must be {low} or more")
    return number


def parse(params, level: str) -> Search:
    """A Search from the query parameters (a QueryDict); SearchError names the bad one."""
    search = Search(level)
    cap = settings.DICOMWEB_QIDO_LIMIT
    search.limit = min(_number(params, "limit", cap, low=1), cap)
    search.offset = _number(params, "offset", 0, low=0)
    if str(params.get("fuzzymatching", "false")).lower() == "true":
        search.warnings.append("fuzzymatching is not supported; the match is exact (wildcards allowed)")
    for value in params.getlist("includefield"):
        for name in filter(None, (v.strip() for v in value.split(","))):
            if name == "all":
                search.include_all = True
            elif keyword_of(name):
                search.include.add(keyword_of(name))
            else:
                search.warnings.append(f"includefield {name[:40]} is not held by the catalog")
    allowed = set(STUDY_MATCH) | ({*SERIES_MATCH} if level != "studies" else set()) | (
        {*SERIES_MATCH, *INSTANCE_MATCH} if level == "instances" else set())
    for name in params:
        if name in CONTROL:
            continue
        keyword = keyword_of(name)
        values = [v for v in params.getlist(name)]
        if keyword is None or keyword not in allowed:
            search.warnings.append(f"{name[:40]} is not a matching key here and was ignored")
            continue
        for value in values:
            value = value.strip()
            if value:
                _match(search, keyword, value)
    return search


def _match(search: Search, keyword: str, value: str) -> None:
    column = ATTRIBUTES[keyword][2]
    if keyword == "ModalitiesInStudy":
        search.modalities += [m.strip() for m in re.split(r"[,\\]", value) if m.strip()]
        return
    if keyword == "StudyDate" or keyword == "PatientBirthDate":
        try:
            day = parse_study_date(value)
        except QueryError as exc:
            raise SearchError(f"{keyword}: {exc}") from None
        first, dash, last = day.partition("-")
        if not dash:
            search.filters &= Q(**{column: first})
        else:
            if first:
                search.filters &= Q(**{f"{column}__gte": first})
            if last:
                search.filters &= Q(**{f"{column}__lte": last})
        return
    if ATTRIBUTES[keyword][1] == "UI":
        if not _UID_LIST.match(value):
            raise SearchError(f"{keyword} '{value[:70]}' is not a UID or a list of UIDs")
        search.filters &= Q(**{f"{column}__in": re.split(r"[,\\]", value)})
        return
    if len(value) > 200:
        raise SearchError(f"{keyword} is longer than 200 characters")
    search.filters &= _wildcard(column, value, insensitive=ATTRIBUTES[keyword][1] == "PN")


def run(search: Search, rows, url) -> list[dict]:
    """The matches of `search` among `rows` (what the user may see), as DICOM JSON datasets.
    `url(study, series=None, sop=None)` is the absolute RetrieveURL."""
    matched = rows.filter(search.filters)
    if search.modalities:
        matched = matched.filter(study_instance_uid__in=rows.filter(modality__in=search.modalities)
                                 .values("study_instance_uid"))
    window = slice(search.offset, search.offset + search.limit)
    if search.level == "instances":
        found = list(matched.order_by("study_instance_uid", "series_instance_uid", "id")[window])
        return [_instance(row, search, url) for row in found]
    key = "study_instance_uid" if search.level == "studies" else "series_instance_uid"
    groups = list(matched.values(key).annotate(first=Min("id")).order_by(key)[window])
    if not groups:
        return []
    uids = [g[key] for g in groups]
    counted = rows.filter(**{f"{key}__in": uids}).values(key).annotate(
        n=Count("id"), series=Count("series_instance_uid", distinct=True))
    counts = {c[key]: c for c in counted}
    reps = Instance.objects.in_bulk([g["first"] for g in groups])
    modalities: dict[str, set[str]] = {}
    if search.level == "studies":
        for study, modality in rows.filter(study_instance_uid__in=uids).values_list(
                "study_instance_uid", "modality").distinct():
            modalities.setdefault(study, set()).add(modality)
    answers = []
    for group in groups:
        row = reps[group["first"]]
        if search.level == "studies":
            answers.append(_study(row, counts[row.study_instance_uid], sorted(modalities.get(row.study_instance_uid, ())),
                                  search, url))
        else:
            answers.append(_series(row, counts[row.series_instance_uid], search, url))
    return answers


def _values(row: Instance) -> dict:
    values = {k: getattr(row, column) for k, (_, _, column) in ATTRIBUTES.items() if column}
    values["SpecificCharacterSet"] = "ISO_IR 192"
    values["InstanceAvailability"] = "ONLINE"
    return values


def _extra(search: Search, level_keywords: list[str], more: list[str]) -> list[str]:
    wanted = set(more) if search.include_all else search.include & set(more)
    return level_keywords + sorted(wanted - set(level_keywords))


def _study(row, counts, modalities, search, url) -> dict:
    values = _values(row) | {"ModalitiesInStudy": [m for m in modalities if m],
                             "NumberOfStudyRelatedSeries": counts["series"], "NumberOfStudyRelatedInstances": counts["n"],
                             "RetrieveURL": url(row.study_instance_uid)}
    return dataset(values, _extra(search, STUDY, []))


def _series(row, counts, search, url) -> dict:
    values = _values(row) | {"NumberOfSeriesRelatedInstances": counts["n"],
                             "RetrieveURL": url(row.study_instance_uid, row.series_instance_uid)}
    # a flat series search answers the study too, as the standard's table lists (and includefield asks)
    keywords = SERIES + (["StudyInstanceUID"] if "StudyInstanceUID" not in SERIES else [])
    return dataset(values, _extra(search, keywords, [k for k in STUDY if k not in ("NumberOfStudyRelatedSeries",
                                                                                 "NumberOfStudyRelatedInstances",
                                                                                 "ModalitiesInStudy", "RetrieveURL")]))


def _instance(row, search, url) -> dict:
    values = _values(row) | {"RetrieveURL": url(row.study_instance_uid, row.series_instance_uid, row.sop_instance_uid)}
    keywords = INSTANCE + ["StudyInstanceUID", "SeriesInstanceUID"]
    return dataset(values, _extra(search, keywords, [k for k in STUDY + SERIES if k not in (
        "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances", "ModalitiesInStudy", "RetrieveURL",
        "NumberOfSeriesRelatedInstances")]))
