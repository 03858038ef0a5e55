"""The SQLite index of :class:`~radserve.server.store.instances.InstanceStore`: schema, rows.

One table per level of the DICOM model of the real world (``studies``, ``series``,
``instances``). Each row holds the attributes QIDO-RS matches on as columns, and the same
attributes (plus a few returned only) as DICOM JSON in ``attributes``, so that a query
result is built without opening a file. Study and series rows are written by the first
instance of their study or series; later instances do not change them.
Queries are built by :mod:`radserve.server.store.query`.
"""

from __future__ import annotations

import enum
import functools
import json
import re
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom import config as pydicom_config
from pydicom import hooks as pydicom_hooks
from pydicom.charset import default_encoding
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import RawDataElement, convert_raw_data_element, empty_value_for_VR
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import IS, PersonName

from radserve.dicom_io import text_value

SCHEMA_VERSION = 1


class QueryLevel(enum.Enum):
    """The level of a query (PS3.4 C.6.1.1): what one result stands for."""

    STUDY = "STUDY"
    SERIES = "SERIES"
    IMAGE = "IMAGE"


class MatchKind(enum.Enum):
    """How values of an attribute are matched."""

    UID = "UID"
    DATE = "DATE"
    TIME = "TIME"
    NAME = "NAME"
    TEXT = "TEXT"
    NUMBER = "NUMBER"


@dataclass(frozen=True)
class IndexedAttribute:
    """An attribute stored as a column of the index.

    Attributes:
        keyword: The DICOM keyword.
        level: The level whose table holds it.
        kind: How values are matched.
    """

    keyword: str
    level: QueryLevel
    kind: MatchKind

    @functools.cached_property
    def column(self) -> str:
        """The column name: the keyword in snake case (``PatientID`` -> ``patient_id``)."""
        return _snake(self.keyword)

    @functools.cached_property
    def tag(self) -> int:
        """The attribute's tag."""
        tag = tag_for_keyword(self.keyword)
        if tag is None:
            raise ValueError(f"{self.keyword} is not a DICOM keyword")
        return tag

    @functools.cached_property
    def vr(self) -> str:
        """The attribute's VR in the data dictionary."""
        return str(dictionary_VR(self.tag))


def _snake(keyword: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", keyword).lower()


_S, _SE, _I = QueryLevel.STUDY, QueryLevel.SERIES, QueryLevel.IMAGE
_U, _D, _T, _N, _X, _NUM = (
    MatchKind.UID,
    MatchKind.DATE,
    MatchKind.TIME,
    MatchKind.NAME,
    MatchKind.TEXT,
    MatchKind.NUMBER,
)
ATTRIBUTES: tuple[IndexedAttribute, ...] = tuple(
    IndexedAttribute(keyword, level, kind)
    for keyword, level, kind in (
        ("StudyInstanceUID", _S, _U),
        ("PatientName", _S, _N),
        ("PatientID", _S, _X),
        ("IssuerOfPatientID", _S, _X),
        ("PatientBirthDate", _S, _D),
        ("PatientSex", _S, _X),
        ("StudyDate", _S, _D),
        ("StudyTime", _S, _T),
        ("AccessionNumber", _S, _X),
        ("StudyID", _S, _X),
        ("StudyDescription", _S, _X),
        ("ReferringPhysicianName", _S, _N),
        ("SeriesInstanceUID", _SE, _U),
        ("Modality", _SE, _X),
        ("SeriesNumber", _SE, _NUM),
        ("SeriesDescription", _SE, _X),
        ("SeriesDate", _SE, _D),
        ("SeriesTime", _SE, _T),
        ("BodyPartExamined", _SE, _X),
        ("PerformedProcedureStepStartDate", _SE, _D),
        ("PerformedProcedureStepStartTime", _SE, _T),
        ("Manufacturer", _SE, _X),
        ("SOPInstanceUID", _I, _U),
        ("SOPClassUID", _I, _U),
        ("InstanceNumber", _I, _NUM),
        ("NumberOfFrames", _I, _NUM),
        ("Rows", _I, _NUM),
        ("Columns", _I, _NUM),
        ("BitsAllocated", _I, _NUM),
        ("ContentDate", _I, _D),
        ("ContentTime", _I, _T),
    )
)
ATTRIBUTES_BY_KEYWORD = {a.keyword: a for a in ATTRIBUTES}
_TABLES = {QueryLevel.STUDY: "studies", QueryLevel.SERIES: "series", QueryLevel.IMAGE: "instances"}
TABLE_ALIASES = {QueryLevel.STUDY: "st", QueryLevel.SERIES: "se", QueryLevel.IMAGE: "i"}
LEVEL_DEPTH = {QueryLevel.STUDY: 0, QueryLevel.SERIES: 1, QueryLevel.IMAGE: 2}
# Keys of each level's table; the parent keys of series and instances come first.
_KEYS = {
    QueryLevel.STUDY: ("study_instance_uid",),
    QueryLevel.SERIES: ("series_instance_uid", "study_instance_uid"),
    QueryLevel.IMAGE: ("sop_instance_uid", "series_instance_uid", "study_instance_uid"),
}


@functools.cache
def index_columns(level: QueryLevel) -> tuple[str, ...]:
    keys = _KEYS[level]
    own = [a.column for a in ATTRIBUTES if a.level is level and a.column not in keys]
    return (*keys, *own)


@functools.cache
def _level_attributes(level: QueryLevel) -> tuple[IndexedAttribute, ...]:
    return tuple(a for a in ATTRIBUTES if a.level is level)


def _column_type(column: str) -> str:
    matches = [a for a in ATTRIBUTES if a.column == column]
    return "INTEGER" if matches and matches[0].kind is MatchKind.NUMBER else "TEXT NOT NULL"


def _table_sql(level: QueryLevel, extra: Sequence[str], references: str | None) -> str:
    columns = index_columns(level)
    lines = [f"{columns[0]} TEXT PRIMARY KEY"]
    lines += [f"{c} {_column_type(c)}" for c in columns[1:]]
    lines += [*extra, "attributes TEXT NOT NULL"]
    if references:
        lines.append(references)
    return f"CREATE TABLE IF NOT EXISTS {_TABLES[level]} (\n  " + ",\n  ".join(lines) + "\n)"


SCHEMA: tuple[str, ...] = (
    _table_sql(QueryLevel.STUDY, (), None),
    _table_sql(
        QueryLevel.SERIES,
        (),
        "FOREIGN KEY (study_instance_uid) REFERENCES studies (study_instance_uid)",
    ),
    _table_sql(
        QueryLevel.IMAGE,
        (
            "transfer_syntax_uid TEXT NOT NULL",
            "path TEXT NOT NULL",
            "size_bytes INTEGER NOT NULL",
            "sha256 TEXT NOT NULL",
            "stored_at TEXT NOT NULL",
        ),
        "FOREIGN KEY (series_instance_uid) REFERENCES series (series_instance_uid)",
    ),
    "CREATE INDEX IF NOT EXISTS series_study ON series (study_instance_uid)",
    "CREATE INDEX IF NOT EXISTS instances_series ON instances (series_instance_uid)",
    "CREATE INDEX IF NOT EXISTS instances_study ON instances (study_instance_uid)",
    "CREATE INDEX IF NOT EXISTS studies_patient_id ON studies (patient_id)",
    "CREATE INDEX IF NOT EXISTS studies_study_date ON studies (study_date)",
    "CREATE INDEX IF NOT EXISTS studies_accession_number ON studies (accession_number)",
    "CREATE INDEX IF NOT EXISTS series_modality ON series (modality)",
    # Files renamed into place whose index rows are not committed yet (see store.py).
    "CREATE TABLE IF NOT EXISTS pending_files (path TEXT PRIMARY KEY)",
)


@dataclass(frozen=True)
class LevelRow:
    """The values of one level's row, in the order of ``index_columns(level)``, plus JSON."""

    level: QueryLevel
    values: tuple[str | int | None, ...]
    attributes: str


@dataclass(frozen=True)
class IndexRows:
    """The study, series and instance rows that index one instance."""

    study: LevelRow
    series: LevelRow
    instance: LevelRow


def _value(
    ds: Dataset, attribute: IndexedAttribute, found: tuple[str, Any] | None
) -> str | int | None:
    if attribute.kind is MatchKind.UID:
        return text_value(ds, attribute.keyword)
    value: Any = None if found is None else found[1]
    if attribute.kind is MatchKind.NUMBER:
        first: Any = value[0] if isinstance(value, MultiValue) and value else value
        try:
            return int(first) if first not in (None, "") else None
        except (TypeError, ValueError):
            return None
    if value is None:
        return ""
    if isinstance(value, MultiValue):
        return "\\".join(str(v) for v in value)
    return str(value).strip(" \x00")


def _json_subset(found: Sequence[tuple[IndexedAttribute, tuple[str, Any] | None]]) -> str:
    """DICOM JSON (PS3.18 F.2) of the attributes present, built without a Dataset copy."""
    subset: dict[str, Any] = {}
    for attribute, element in found:
        if element is None or _is_empty(*element):
            continue
        vr, value = element
        values = value if isinstance(value, MultiValue) else [value]
        try:
            items = [_json_item(vr, v) for v in values]
        except (TypeError, ValueError):
            continue  # an invalid value is left out, as to_json_dict(suppress_invalid_tags)
        subset[f"{attribute.tag:08X}"] = {"vr": vr, "Value": items}
    return json.dumps(subset, separators=(",", ":"), ensure_ascii=False)


def _is_empty(vr: str, value: Any) -> bool:
    """As ``DataElement.is_empty`` (a VM of 0)."""
    if value is None:
        return True
    if isinstance(value, str | bytes | PersonName):
        return not value
    try:
        return len(value) == 0
    except TypeError:
        return False


# --- reading values from raw elements --------------------------------------------------------
#
# Indexing reads about 30 values per instance. pydicom's attribute access converts each raw
# element through its hooks, validates it and stores a new DataElement in the data set, which
# costs tens of microseconds per value. The plain cases (one ASCII value of a UI, CS, DA, TM,
# SH, LO or IS element, one US value) are decoded here directly, giving the values pydicom's
# conversion gives; anything else (several values, other characters, person names, VRs that
# differ from the dictionary, customised pydicom hooks or settings) goes through
# ``convert_raw_data_element``, without changing the data set.

_ASCII_CHARSETS = frozenset({default_encoding, "latin_1", "UTF8", "utf_8", "iso_ir_6"})
_STRING_VRS = frozenset({"UI", "CS", "DA", "TM"})
_TEXT_VRS = frozenset({"SH", "LO"})
_INTEGER = re.compile(rb" *[+-]?[0-9]{1,12} *")


def _plain_pydicom() -> bool:
    """Whether pydicom converts raw values in its default way (else never decode here)."""
    hooks = pydicom_hooks.hooks
    return (
        pydicom_config.data_element_callback is None
        and not pydicom_config.datetime_conversion
        and not pydicom_config.use_IS_numpy
        and not pydicom_config.use_none_as_empty_text_VR_value
        and hooks.raw_element_vr is pydicom_hooks.raw_element_vr
        and hooks.raw_element_value is pydicom_hooks.raw_element_value
        and not hooks.raw_element_kwargs
    )


def _text_encodings(ds: Dataset) -> list[str]:
    """The data set's character sets, as pydicom decodes its text with them."""
    encodings = ds._character_set  # what Dataset.__getitem__ converts values with
    return [encodings] if isinstance(encodings, str) else list(encodings)


def _read(
    ds: Dataset, attribute: IndexedAttribute, encodings: list[str], plain: bool
) -> tuple[str, Any] | None:
    """``(VR, value)`` of an attribute, as pydicom converts it; ``None`` when absent."""
    element = ds.get_item(attribute.tag)
    if element is None:
        return None
    if not isinstance(element, RawDataElement):
        return str(element.VR), element.value
    raw = element.value
    vr = element.VR or attribute.vr
    if plain and vr == attribute.vr and isinstance(raw, bytes):
        if not raw:
            return vr, empty_value_for_VR(vr)
        if vr == "US":
            if len(raw) == 2:
                return vr, int.from_bytes(raw, "little" if element.is_little_endian else "big")
        elif b"\\" not in raw and raw.isascii():
            if vr in _STRING_VRS:
                return vr, raw.decode("ascii").rstrip(" \x00")
            if vr in _TEXT_VRS and len(encodings) == 1 and encodings[0] in _ASCII_CHARSETS:
                return vr, raw.decode("ascii").rstrip("\x00 ")
            if vr == "IS" and _INTEGER.fullmatch(raw.rstrip(b"\x00")):
                return vr, IS(int(raw.rstrip(b" \x00")))
    converted = convert_raw_data_element(element, encoding=encodings, ds=ds)
    return str(converted.VR), converted.value


def _json_item(vr: str, value: Any) -> Any:
    if vr == "PN":
        groups = {
            "Alphabetic": value.alphabetic,
            "Ideographic": value.ideographic,
            "Phonetic": value.phonetic,
        }
        return {name: text for name, text in groups.items() if text}
    if vr in ("IS", "US", "SS", "UL", "SL"):
        return int(value)
    if vr in ("DS", "FL", "FD"):
        return float(value)
    return str(value)


def index_rows(ds: Dataset, *, file_values: Mapping[str, str | int]) -> IndexRows:
    """The index rows for one instance.

    Args:
        ds: The instance (pixel data need not be loaded).
        file_values: ``transfer_syntax_uid``, ``path``, ``size_bytes``, ``sha256`` and
            ``stored_at`` of the instance's file.
    """
    plain = _plain_pydicom()
    encodings = _text_encodings(ds)
    rows = []
    for level in QueryLevel:
        found = [(a, _read(ds, a, encodings, plain)) for a in _level_attributes(level)]
        values = {a.column: _value(ds, a, element) for a, element in found}
        for column in _KEYS[level][1:]:  # the keys of the parent levels
            values[column] = text_value(ds, _keyword(column))
        ordered = tuple(values[c] for c in index_columns(level))
        if level is QueryLevel.IMAGE:
            ordered += tuple(file_values[k] for k in _FILE_COLUMNS)
        rows.append(LevelRow(level, ordered, _json_subset(found)))
    return IndexRows(*rows)


_FILE_COLUMNS = ("transfer_syntax_uid", "path", "size_bytes", "sha256", "stored_at")


@functools.cache
def _keyword(column: str) -> str:
    return next(a.keyword for a in ATTRIBUTES if a.column == column)


def insert_sql(level: QueryLevel, *, replace: bool) -> str:
    """``INSERT`` (or ``INSERT OR REPLACE``) of one row of ``level``."""
    columns = [*index_columns(level)]
    if level is QueryLevel.IMAGE:
        columns += _FILE_COLUMNS
    columns.append("attributes")
    verb = "INSERT OR REPLACE" if replace else "INSERT OR IGNORE"
    marks = ", ".join("?" for _ in columns)
    return f"{verb} INTO {_TABLES[level]} ({', '.join(columns)}) VALUES ({marks})"


def row_parameters(row: LevelRow) -> tuple[str | int | None, ...]:
    """The parameters of :func:`insert_sql` for ``row``."""
    return (*row.values, row.attributes)


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error) on an autocommit connection."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        if db.in_transaction:  # SQLite may have rolled back already (disk full, ...)
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


class IndexDatabase:
    """The index file: one writer connection, used under :meth:`writing`, and one reader
    connection per thread. WAL mode with ``synchronous=FULL``: a commit is durable.

    Raises:
        sqlite3.Error: The file cannot be opened, or holds another schema version.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()  # guards the connection list
        self._write_lock = threading.Lock()
        self._closed = False
        self._writer = self._connect()
        version = self._writer.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            self.close()
            raise sqlite3.DatabaseError(f"index schema version {version} is not {SCHEMA_VERSION}")
        with transaction(self._writer):
            for statement in SCHEMA:
                self._writer.execute(statement)
            self._writer.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _connect(self) -> sqlite3.Connection:
        if self._closed:
            raise sqlite3.ProgrammingError("the index is closed")
        connection = sqlite3.connect(
            self._path, timeout=30, isolation_level=None, check_same_thread=False
        )
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("PRAGMA foreign_keys=ON")
        with self._lock:
            self._connections.append(connection)
        return connection

    def reader(self) -> sqlite3.Connection:
        """This thread's connection for queries."""
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._connect()
            self._local.connection = connection
        return connection

    @contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        """The writer connection, held exclusively (open transactions with :func:`transaction`)."""
        with self._write_lock:
            yield self._writer

    def close(self) -> None:
        """Close every connection."""
        self._closed = True
        with self._lock:
            for connection in self._connections:
                connection.close()
            self._connections.clear()


def insert_rows(db: sqlite3.Connection, rows: IndexRows) -> None:
    """Index one instance: its study and series rows unless present, its instance row."""
    db.execute(insert_sql(QueryLevel.STUDY, replace=False), row_parameters(rows.study))
    db.execute(insert_sql(QueryLevel.SERIES, replace=False), row_parameters(rows.series))
    db.execute(insert_sql(QueryLevel.IMAGE, replace=True), row_parameters(rows.instance))
