"""Queries of the instance store's index: QIDO-RS matching (PS3.4 C.2.2.2) as SQL.

Matching follows PS3.4 C.2.2.2 as PS3.18 uses it for QIDO-RS:

* an empty value matches everything (universal matching);
* UI attributes match any value of a list separated by ``,`` or ``\\``;
* DA and TM attributes match a single value or a range ``a-b``, ``-b``, ``a-``;
* ``*`` and ``?`` are wildcards (not for UI, DA, TM or numbers);
* person names match case-insensitively, other text case-sensitively;
* ``ModalitiesInStudy`` matches studies with a series of any of the listed modalities.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydicom.datadict import tag_for_keyword

from radserve.server.store.errors import QueryError
from radserve.server.store.index import (
    ATTRIBUTES,
    ATTRIBUTES_BY_KEYWORD,
    LEVEL_DEPTH,
    TABLE_ALIASES,
    IndexedAttribute,
    MatchKind,
    QueryLevel,
)

_DATE = re.compile(r"[0-9]{8}")  # ASCII digits: \d would take any script's
_TIME = re.compile(r"[0-9]{2}([0-9]{2}([0-9]{2}(\.[0-9]{1,6})?)?)?")
_INTEGER = re.compile(r"-?[0-9]{1,18}")


@dataclass(frozen=True)
class InstanceQuery:
    """A QIDO-RS style query.

    Attributes:
        level: What one result stands for.
        match: Matching keys: DICOM keyword -> value in DICOM matching syntax.
        study_instance_uid: Only within this study.
        series_instance_uid: Only within this series.
        limit: At most this many results (``None``: all).
        offset: Skip this many results first.
    """

    level: QueryLevel
    match: Mapping[str, str] = field(default_factory=dict)
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    limit: int | None = None
    offset: int = 0


def matchable_keywords(level: QueryLevel) -> frozenset[str]:
    """The keywords a query at ``level`` can match on (its level and the levels above)."""
    keywords = {a.keyword for a in ATTRIBUTES if LEVEL_DEPTH[a.level] <= LEVEL_DEPTH[level]}
    if level is QueryLevel.STUDY:
        keywords.add("ModalitiesInStudy")
    return frozenset(keywords)


# The largest limit or offset of a query (SQLite takes 64-bit integers; no store is larger).
MAX_OFFSET = 10**9


def search_sql(query: InstanceQuery) -> tuple[str, list[Any]]:
    """The SQL (and its parameters) of a query; rows as :func:`result_json` reads them.

    Raises:
        QueryError: A matching key is not supported at the query's level or a value is
            malformed.
    """
    if (query.limit is not None and query.limit < 0) or query.offset < 0:
        raise QueryError("limit and offset must not be negative")
    if query.offset > MAX_OFFSET or (query.limit or 0) > MAX_OFFSET:
        raise QueryError(f"limit and offset must be at most {MAX_OFFSET}")
    level = query.level
    where: list[str] = []
    params: list[Any] = []
    if query.study_instance_uid is not None:
        where.append("st.study_instance_uid = ?")
        params.append(query.study_instance_uid)
    if query.series_instance_uid is not None:
        if level is QueryLevel.STUDY:
            raise QueryError("a study query cannot be limited to a series")
        where.append("se.series_instance_uid = ?")
        params.append(query.series_instance_uid)
    allowed = matchable_keywords(level)
    for keyword, value in sorted(query.match.items()):
        if keyword not in allowed:
            raise QueryError(f"{keyword} is not supported for matching at the {level.value} level")
        if value == "":
            continue  # universal matching
        if keyword == "ModalitiesInStudy":
            values = _list(value)
            marks = ", ".join("?" for _ in values)
            where.append(
                "EXISTS (SELECT 1 FROM series m WHERE m.study_instance_uid = "
                f"st.study_instance_uid AND m.modality IN ({marks}))"
            )
            params.extend(values)
            continue
        attribute = ATTRIBUTES_BY_KEYWORD[keyword]
        sql, values = _condition(
            attribute, f"{TABLE_ALIASES[attribute.level]}.{attribute.column}", value
        )
        where.append(sql)
        params.extend(values)
    sql = _select(level)
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY " + _ORDER[level]
    sql += " LIMIT ? OFFSET ?"
    params.extend([-1 if query.limit is None else query.limit, query.offset])
    return sql, params


_ORDER = {
    QueryLevel.STUDY: "st.rowid",
    QueryLevel.SERIES: "st.rowid, se.series_number, se.series_instance_uid",
    QueryLevel.IMAGE: (
        "st.rowid, se.series_number, se.series_instance_uid, i.instance_number, i.sop_instance_uid"
    ),
}


def _select(level: QueryLevel) -> str:
    study_counts = (
        "(SELECT COUNT(*) FROM series c WHERE c.study_instance_uid = st.study_instance_uid), "
        "(SELECT COUNT(*) FROM instances c WHERE c.study_instance_uid = st.study_instance_uid), "
        "(SELECT group_concat(DISTINCT c.modality) FROM series c "
        "WHERE c.study_instance_uid = st.study_instance_uid)"
    )
    if level is QueryLevel.STUDY:
        return f"SELECT st.attributes, {study_counts} FROM studies st"
    series_count = (
        "(SELECT COUNT(*) FROM instances c WHERE c.series_instance_uid = se.series_instance_uid)"
    )
    joined = "series se JOIN studies st ON st.study_instance_uid = se.study_instance_uid"
    if level is QueryLevel.SERIES:
        return f"SELECT st.attributes, se.attributes, {series_count} FROM {joined}"
    return (
        "SELECT st.attributes, se.attributes, i.attributes, i.transfer_syntax_uid "
        "FROM instances i JOIN series se ON se.series_instance_uid = i.series_instance_uid "
        "JOIN studies st ON st.study_instance_uid = se.study_instance_uid"
    )


def _condition(attribute: IndexedAttribute, column: str, value: str) -> tuple[str, list[Any]]:
    kind = attribute.kind
    name = attribute.keyword
    if kind is MatchKind.UID:
        values = _list(value)
        return f"{column} IN ({', '.join('?' for _ in values)})", values
    if kind is MatchKind.NUMBER:
        if not _INTEGER.fullmatch(value):
            raise QueryError(f"{name} must be an integer")
        return f"{column} = ?", [int(value)]
    if kind in (MatchKind.DATE, MatchKind.TIME):
        return _range(column, name, value, _DATE if kind is MatchKind.DATE else _TIME)
    wildcard = "*" in value or "?" in value
    if kind is MatchKind.NAME:
        if wildcard:
            return f"{column} LIKE ? ESCAPE '\\'", [_like_pattern(value)]
        return f"{column} = ? COLLATE NOCASE", [value]
    if wildcard:
        return f"{column} GLOB ?", [value.replace("[", "[[]")]
    return f"{column} = ?", [value]


def _list(value: str) -> list[str]:
    values = [v.strip() for v in re.split(r"[,\\]", value) if v.strip()]
    if not values:
        raise QueryError("empty list of values")
    return values


def _range(column: str, name: str, value: str, pattern: re.Pattern[str]) -> tuple[str, list[Any]]:
    low, dash, high = value.partition("-")
    for part in (low, high):
        if part and not pattern.fullmatch(part):
            raise QueryError(f"{name} value or range is malformed")
    if not dash:
        return f"{column} = ?", [low]
    if not low and not high:
        raise QueryError(f"{name} range has no bound")
    conditions: list[str] = []
    params: list[Any] = []
    if low:
        conditions.append(f"{column} >= ?")
        params.append(low)
    if high:
        # Compare only as many characters as the bound has: 1200 includes 120030.
        conditions.append(f"{column} != '' AND substr({column}, 1, ?) <= ?")
        params.extend([len(high), high])
    return " AND ".join(conditions), params


def _like_pattern(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


def result_json(level: QueryLevel, row: Sequence[Any]) -> dict[str, Any]:
    """The DICOM JSON result (PS3.18 F.2) of one row of :func:`search_sql`'s query."""
    result: dict[str, Any] = json.loads(row[0])
    if level is QueryLevel.STUDY:
        result[_NUMBER_OF_STUDY_RELATED_SERIES] = _json_value("IS", int(row[1]))
        result[_NUMBER_OF_STUDY_RELATED_INSTANCES] = _json_value("IS", int(row[2]))
        modalities = sorted({m for m in (row[3] or "").split(",") if m})
        if modalities:
            result[_MODALITIES_IN_STUDY] = _json_value("CS", *modalities)
        return dict(sorted(result.items()))
    result.update(json.loads(row[1]))
    if level is QueryLevel.SERIES:
        result[_NUMBER_OF_SERIES_RELATED_INSTANCES] = _json_value("IS", int(row[2]))
        return dict(sorted(result.items()))
    result.update(json.loads(row[2]))
    if row[3]:
        result[_AVAILABLE_TRANSFER_SYNTAX_UID] = _json_value("UI", row[3])
    return dict(sorted(result.items()))


_NUMBER_OF_STUDY_RELATED_SERIES = "00201206"
_NUMBER_OF_STUDY_RELATED_INSTANCES = "00201208"
_NUMBER_OF_SERIES_RELATED_INSTANCES = "00201209"
_MODALITIES_IN_STUDY = "00080061"
_AVAILABLE_TRANSFER_SYNTAX_UID = "00083002"


def _json_value(vr: str, *values: str | int) -> dict[str, Any]:
    return {"vr": vr, "Value": list(values)}


def check_keyword(keyword: str) -> None:
    """Raise :class:`QueryError` unless ``keyword`` is a DICOM keyword."""
    if tag_for_keyword(keyword) is None:
        raise QueryError(f"{keyword!r} is not a DICOM attribute keyword")
