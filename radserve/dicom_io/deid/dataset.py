"""De-identification: the PS3.15 Annex E Basic Application Level Confidentiality Profile.

The profile table (PS3.15 Table E.1-1) is data in :mod:`radserve.dicom_io.deid.profile`; this
module applies it, recursively inside sequences, with these options: Retain UIDs, Retain
Longitudinal Temporal Information with Full Dates or with Modified Dates, Retain Patient
Characteristics, Retain Device Identity, Retain Institution Identity and Clean Descriptors.

Replacements are keyed by a caller-supplied secret salt, so a study de-identified in several
runs, or instance by instance, stays consistent: UIDs map to the same 2.25 UIDs, a patient gets
the same pseudonym and the same date shift.

Choices the standard leaves to the implementation (no IOD tables are consulted):

- Combined codes keep the attribute whenever the IOD might need it: X/Z -> Z, X/D, X/Z/D and
  Z/D -> D, X/Z/U* -> the sequence is kept and the UIDs inside it are replaced. A sequence
  that is X/Z keeps its items with dummy content (a zero-item Type 3 sequence is invalid).
- Patient's Name and Patient ID (Z, Z/D) get a pseudonym derived from the salt and the
  original Patient ID (or name), so patients stay apart; both stay empty when both were empty.
- Every private attribute, every curve (50xx) and the whole overlay group (60xx) are removed
  (the table lists overlay data and comments; the rest of the group is useless without them),
  and so are group lengths.
- "Clean" keeps free text minus any identifying value found in the instance (names, IDs,
  accession number, birth date, institution, ...) and minus anything that looks like a date;
  with Modified Dates it shifts dates and date-times by whole days, so times stay as they were.
- Burned-in annotation is not looked for (no Clean Pixel Data option); :class:`DeidReport`
  counts the instances flagged Burned In Annotation = YES.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from enum import Enum

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from radserve.dicom_io.deid.profile import (
    BASIC_PROFILE_CODE_MEANING,
    BASIC_PROFILE_CODE_VALUE,
    ROWS_BY_TAG,
    STANDARD_EDITION,
    ProfileOption,
    ProfileRow,
)
from radserve.dicom_io.errors import DeidentificationError
from radserve.dicom_io.uids import derive_uid

__all__ = [
    "MIN_SALT_LENGTH",
    "SALT_ENV_VAR",
    "DeidOptions",
    "DeidentificationError",
    "deidentify",
    "resolve_salt",
]

SALT_ENV_VAR = "RADSERVE_DEID_SALT"

MIN_SALT_LENGTH = 16
"""Shortest salt accepted: with a guessable salt, pseudonyms of short IDs can be reversed."""

DATE_SHIFT_RANGE_DAYS = (365, 3650)
"""Modified Dates moves every date of a patient back by this many days (inclusive range)."""

_DUMMY_TEXT = "ANONYMIZED"
_DUMMY_BY_VR: dict[str, object] = {
    "DA": "19000101",
    "DT": "19000101000000",
    "TM": "000000",
    "AS": "000Y",
    "DS": "0",
    "IS": "0",
}
_BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
_NUMBER_VRS = frozenset({"US", "SS", "UL", "SL", "FL", "FD", "UV", "SV", "AT"})
_TEXT_VRS = frozenset({"SH", "LO", "ST", "LT", "UT", "UC"})
_FREE_TEXT_VRS = frozenset({"ST", "LT", "UT", "UC"})
_CODE_TAGS = frozenset({0x00080100, 0x00080102, 0x00080103, 0x00080119, 0x00080120})
_COMBINED = {"Z/D": "D", "X/Z": "Z", "X/D": "D", "X/Z/D": "D", "X/Z/U*": "U*"}
_PATIENT_NAME, _PATIENT_ID = 0x00100010, 0x00100020
_FILE_META_REMOVED = (0x00020016, 0x00020017, 0x00020018, 0x00020100, 0x00020102)
# Attributes whose values are cut out of text being cleaned.
_IDENTIFYING_KEYWORDS = (  # noqa: SIM905 (a word list reads better as one string)
    "PatientName PatientID OtherPatientIDs OtherPatientNames PatientBirthName PatientBirthDate "
    "PatientMotherBirthName PatientAddress AccessionNumber ReferringPhysicianName "
    "PerformingPhysicianName PhysiciansOfRecord NameOfPhysiciansReadingStudy OperatorsName "
    "RequestingPhysician InstitutionName InstitutionAddress InstitutionalDepartmentName"
).split()
_DATE_LIKE = re.compile(
    r"(?<!\d)(?:(?:19|20)\d\d[-./]?(?:0[1-9]|1[0-2])[-./]?(?:0[1-9]|[12]\d|3[01])"
    r"|(?:0[1-9]|[12]\d|3[01])[-./](?:0[1-9]|1[0-2])[-./](?:19|20)\d\d)(?!\d)"
)


@dataclass(frozen=True)
class DeidOptions:
    """The profile options to apply, and the secret salt that keys every replacement.

    Attributes:
        salt: Secret of at least :data:`MIN_SALT_LENGTH` characters. Keep it to de-identify
            later instances of the same patients consistently; never publish it.
        retain_uids: Retain UIDs Option (no UID is replaced).
        retain_longitudinal_full_dates: Retain Longitudinal Temporal Information with Full
            Dates Option.
        retain_longitudinal_modified_dates: ... with Modified Dates Option (dates shifted by
            a per-patient number of days).
        retain_patient_characteristics: Retain Patient Characteristics Option.
        retain_device_identity: Retain Device Identity Option.
        retain_institution_identity: Retain Institution Identity Option.
        clean_descriptors: Clean Descriptors Option.
    """

    salt: str = field(repr=False)
    retain_uids: bool = False
    retain_longitudinal_full_dates: bool = False
    retain_longitudinal_modified_dates: bool = False
    retain_patient_characteristics: bool = False
    retain_device_identity: bool = False
    retain_institution_identity: bool = False
    clean_descriptors: bool = False

    def __post_init__(self) -> None:
        if len(self.salt.strip()) < MIN_SALT_LENGTH:
            raise DeidentificationError(
                f"the de-identification salt must be a secret of at least {MIN_SALT_LENGTH} "
                "characters"
            )
        if self.retain_longitudinal_full_dates and self.retain_longitudinal_modified_dates:
            raise DeidentificationError("choose either full dates or modified dates, not both")

    @property
    def profile_options(self) -> frozenset[ProfileOption]:
        """The PS3.15 options these settings select."""
        chosen = {
            ProfileOption.RETAIN_UIDS: self.retain_uids,
            ProfileOption.RETAIN_LONGITUDINAL_FULL_DATES: self.retain_longitudinal_full_dates,
            ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES: (
                self.retain_longitudinal_modified_dates
            ),
            ProfileOption.RETAIN_PATIENT_CHARACTERISTICS: self.retain_patient_characteristics,
            ProfileOption.RETAIN_DEVICE_IDENTITY: self.retain_device_identity,
            ProfileOption.RETAIN_INSTITUTION_IDENTITY: self.retain_institution_identity,
            ProfileOption.CLEAN_DESCRIPTORS: self.clean_descriptors,
        }
        return frozenset(option for option, on in chosen.items() if on)


class _Mode(Enum):
    """How attributes that the table does not name are treated inside a sequence."""

    KEEP = "keep"
    CLEAN = "clean"  # inside a sequence being cleaned: scrub free text
    DUMMY = "dummy"  # inside a sequence replaced by a dummy: replace free text and names


@dataclass(frozen=True)
class _Context:
    options: DeidOptions
    chosen: frozenset[ProfileOption]
    pseudonym: str  # Patient ID ANON<pseudonym>, Patient's Name ANON^<pseudonym>; "" if none
    date_shift_days: int
    scrub: Callable[[str], str]


def deidentify(ds: Dataset, *, options: DeidOptions) -> Dataset:
    """A de-identified copy of ``ds``; ``ds`` itself is left unchanged.

    Applies the Basic Profile with the chosen options, records what was done (Patient Identity
    Removed, De-identification Method and its Code Sequence, Longitudinal Temporal Information
    Modified) and makes the file meta information match the new SOP Instance UID.
    """
    out = copy.deepcopy(ds)
    ctx = _context(ds, options)
    _deidentify_items(out, ctx, _Mode.KEEP)
    if not options.retain_uids and not str(out.get("SOPInstanceUID", "")).strip():
        out.SOPInstanceUID = _new_uid(ctx, _fallback_instance_key(ds))
    _record_method(out, ctx)
    _rebuild_file_meta(out, ds)
    out.preamble = b"\0" * 128
    return out


def _context(ds: Dataset, options: DeidOptions) -> _Context:
    patient_key = (
        str(ds.get("PatientID", "") or "").strip() or str(ds.get("PatientName", "") or "").strip()
    )
    low, high = DATE_SHIFT_RANGE_DAYS
    digest = _keyed(options.salt, "date-shift", patient_key)
    shift = -(low + int(digest[:12], 16) % (high - low + 1))
    pseudonym = _keyed(options.salt, "patient", patient_key)[:12].upper() if patient_key else ""
    return _Context(
        options=options,
        chosen=options.profile_options,
        pseudonym=pseudonym,
        date_shift_days=shift,
        scrub=_scrubber(ds, options),
    )


def _keyed(salt: str, *parts: str) -> str:
    message = "\x1f".join(parts).encode()
    return hmac.new(salt.encode(), message, hashlib.sha256).hexdigest()


def _deidentify_items(ds: Dataset, ctx: _Context, mode: _Mode) -> None:
    for tag in list(ds.keys()):
        row = ROWS_BY_TAG.get(int(tag))
        action = _resolve(row, ctx.chosen) if row is not None else _implicit_action(tag)
        if action == "X":
            # Deleted before its value is parsed: a malformed private value cannot break us.
            del ds[tag]
            continue
        elem = ds[tag]
        if action is None:
            _keep(elem, ctx, mode)
        else:
            _apply(ds, elem, action, row, ctx)


def _implicit_action(tag: BaseTag) -> str | None:
    """X for private attributes, group lengths, curves (50xx) and overlays (60xx), else None.

    The table's pattern rows (``deid_profile.PATTERN_ROWS``: curve data, overlay data and
    overlay comments) are all X; the rest of an overlay group goes with them.
    """
    if tag.is_private or tag.element == 0 or (tag.group & 0xFF00) in (0x5000, 0x6000):
        return "X"
    return None


def _resolve(row: ProfileRow, chosen: frozenset[ProfileOption]) -> str:
    """The action for a row: an option that keeps wins over one that cleans, over the basic."""
    codes = {code for option, code in row.options.items() if option in chosen}
    if "K" in codes:
        return "K"
    if "C" in codes:
        return "C"
    return row.basic


def _apply(
    ds: Dataset, elem: DataElement, action: str, row: ProfileRow | None, ctx: _Context
) -> None:
    if action == "X/Z" and elem.VR == "SQ":
        action = "D"  # Z as dummy items: an empty Type 3 sequence breaks its "1-n items" rule
    action = _COMBINED.get(action, action)
    if elem.tag in (_PATIENT_NAME, _PATIENT_ID) and action in ("Z", "D"):
        separator = "^" if elem.tag == _PATIENT_NAME else ""
        elem.value = f"ANON{separator}{ctx.pseudonym}" if ctx.pseudonym else ""
    elif action == "X":
        del ds[elem.tag]
    elif action == "Z":
        elem.value = elem.empty_value
    elif action == "D":
        _dummy(elem, ctx)
    elif action == "C":
        _clean(ds, elem, row, ctx)
    elif action in ("U", "U*") and elem.VR != "SQ":
        if elem.VR == "UI":
            _replace_uids(elem, ctx)
        else:  # an unparsed value (VR UN) cannot be mapped: drop it
            del ds[elem.tag]
    elif elem.VR == "SQ":  # K or U*: keep the sequence, apply the profile to its items
        _recurse(elem, ctx, _Mode.KEEP)


def _recurse(elem: DataElement, ctx: _Context, mode: _Mode) -> None:
    for item in elem.value:
        _deidentify_items(item, ctx, mode)


def _keep(elem: DataElement, ctx: _Context, mode: _Mode) -> None:
    """An attribute the table does not name: kept, unless inside a cleaned or dummy sequence."""
    if elem.VR == "SQ":
        _recurse(elem, ctx, mode)
    elif mode is _Mode.KEEP or elem.is_empty or int(elem.tag) in _CODE_TAGS:
        return
    elif elem.VR == "PN" or (mode is _Mode.DUMMY and elem.VR in _FREE_TEXT_VRS):
        elem.value = _DUMMY_TEXT
    elif mode is _Mode.CLEAN and elem.VR in _TEXT_VRS:
        _scrub_element(elem, ctx)


def _dummy(elem: DataElement, ctx: _Context) -> None:
    vr = elem.VR
    if vr == "SQ":
        _recurse(elem, ctx, _Mode.DUMMY)
    elif vr == "UI":
        _replace_uids(elem, ctx)
    elif vr in _BINARY_VRS:
        elem.value = b"\0\0"
    elif vr in _NUMBER_VRS:
        elem.value = 0
    else:
        elem.value = _DUMMY_BY_VR.get(vr, _DUMMY_TEXT)


def _clean(ds: Dataset, elem: DataElement, row: ProfileRow | None, ctx: _Context) -> None:
    vr = elem.VR
    if vr == "SQ":
        _recurse(elem, ctx, _Mode.CLEAN)
    elif vr in ("DA", "DT") and ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES in ctx.chosen:
        _shift_dates(elem, ctx.date_shift_days)
    elif vr == "TM" and ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES in ctx.chosen:
        pass  # whole-day shifts leave the time of day as it was
    elif vr in _TEXT_VRS:
        _scrub_element(elem, ctx)
    elif vr == "AE":
        elem.value = f"AE{_keyed(ctx.options.salt, 'ae', str(elem.value))[:14].upper()}"
    elif vr == "PN":
        elem.value = _DUMMY_TEXT
    elif row is not None:  # nothing to clean with: fall back to the Basic Profile
        _apply(ds, elem, row.basic, None, ctx)


def _replace_uids(elem: DataElement, ctx: _Context) -> None:
    if elem.VM > 1:
        elem.value = [_new_uid(ctx, str(uid)) for uid in elem.value]
    elif not elem.is_empty:
        elem.value = _new_uid(ctx, str(elem.value))


def _new_uid(ctx: _Context, uid: str) -> str:
    uid = uid.strip().rstrip("\0")
    return derive_uid("deid", ctx.options.salt, uid) if uid else ""


def _fallback_instance_key(ds: Dataset) -> str:
    """A stable identity for an instance whose SOP Instance UID is empty."""
    meta_uid = str(getattr(ds, "file_meta", Dataset()).get("MediaStorageSOPInstanceUID", ""))
    if meta_uid.strip():
        return meta_uid
    digest = hashlib.sha256()
    for keyword in ("SeriesInstanceUID", "InstanceNumber", "ImagePositionPatient"):
        digest.update(repr(ds.get(keyword)).encode())
    if "PixelData" in ds:
        digest.update(ds.PixelData)
    return f"content-{digest.hexdigest()}"


def _shift_dates(elem: DataElement, days: int) -> None:
    shift = _shift_da if elem.VR == "DA" else _shift_dt
    if elem.VM > 1:
        elem.value = [shift(str(v), days) for v in elem.value]
    elif not elem.is_empty:
        elem.value = shift(str(elem.value), days)


def _shift_da(value: str, days: int) -> str:
    match = re.fullmatch(r"(\d{4})\.?(\d{2})\.?(\d{2})", value.strip())
    if match is None:
        return ""  # not a date we can shift: dropping it is the safe side
    try:
        day = date(*map(int, match.groups())) + timedelta(days=days)
    except (ValueError, OverflowError):
        return ""
    return f"{day.year:04d}{day.month:02d}{day.day:02d}"


def _shift_dt(value: str, days: int) -> str:
    match = re.fullmatch(r"(\d{4})(\d{2})?(\d{2})?(.*)", value.strip())
    if match is None:
        return ""
    year, month, day_of_month, rest = match.groups()
    if day_of_month is not None:
        shifted = _shift_da(f"{year}{month}{day_of_month}", days)
        return f"{shifted}{rest}" if shifted else ""
    # Year or year-month precision: shift the middle of the period, keep the precision.
    middle = _shift_da(f"{year}{month or '07'}{'15' if month else '01'}", days)
    if not middle:
        return ""
    return f"{middle[:6] if month else middle[:4]}{rest}"


def _scrubber(ds: Dataset, options: DeidOptions) -> Callable[[str], str]:
    terms: set[str] = set()
    for keyword in _IDENTIFYING_KEYWORDS:
        if keyword.startswith("Institution") and options.retain_institution_identity:
            continue
        value = ds.get(keyword)
        values = value if isinstance(value, MultiValue | list) else [value]
        for item in values:
            text = str(item or "")
            terms.update(part for part in re.split(r"[\^=\r\n\\]+", text) if len(part) >= 2)
            if len(text) >= 2:
                terms.add(text)
    pattern = (
        re.compile(
            r"(?<![0-9A-Za-z])(?:"
            + "|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True))
            + r")(?![0-9A-Za-z])",
            re.IGNORECASE,
        )
        if terms
        else None
    )

    def scrub(text: str) -> str:
        text = _DATE_LIKE.sub("*", text)
        return pattern.sub("*", text) if pattern is not None else text

    return scrub


def _scrub_element(elem: DataElement, ctx: _Context) -> None:
    if elem.VM > 1:
        elem.value = [ctx.scrub(str(v)) for v in elem.value]
    elif not elem.is_empty:
        elem.value = ctx.scrub(str(elem.value))


def _method_codes(ctx: _Context) -> list[tuple[str, str]]:
    codes = [(BASIC_PROFILE_CODE_VALUE, BASIC_PROFILE_CODE_MEANING)]
    codes += [(o.value, o.code_meaning) for o in ProfileOption if o in ctx.chosen]
    return codes


def _record_method(ds: Dataset, ctx: _Context) -> None:
    codes = _method_codes(ctx)
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = [f"radserve PS3.15 {STANDARD_EDITION} Table E.1-1"] + [
        meaning for _, meaning in codes
    ]
    items = []
    for value, meaning in codes:
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        items.append(item)
    ds.DeidentificationMethodCodeSequence = Sequence(items)
    if ProfileOption.RETAIN_LONGITUDINAL_FULL_DATES in ctx.chosen:
        ds.LongitudinalTemporalInformationModified = "UNMODIFIED"
    elif ProfileOption.RETAIN_LONGITUDINAL_MODIFIED_DATES in ctx.chosen:
        ds.LongitudinalTemporalInformationModified = "MODIFIED"
    else:
        ds.LongitudinalTemporalInformationModified = "REMOVED"


def _rebuild_file_meta(out: Dataset, original: Dataset) -> None:
    meta = FileMetaDataset(copy.deepcopy(getattr(original, "file_meta", FileMetaDataset())))
    for tag in _FILE_META_REMOVED:
        if tag in meta:
            del meta[tag]
    if "TransferSyntaxUID" not in meta:
        implicit, little = original.original_encoding
        meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian
            if implicit
            else (ExplicitVRLittleEndian if little is not False else ExplicitVRBigEndian)
        )
    meta.MediaStorageSOPClassUID = out.get("SOPClassUID", "")
    meta.MediaStorageSOPInstanceUID = out.get("SOPInstanceUID", "")
    out.file_meta = meta


def resolve_salt(salt: str | None) -> str:
    """The salt given on the command line, else the one in ``RADSERVE_DEID_SALT``.

    Raises:
        DeidentificationError: Neither is set (there is no default salt).
    """
    value = salt if salt else os.environ.get(SALT_ENV_VAR, "")
    if not value.strip():
        raise DeidentificationError(f"no de-identification salt: pass --salt or set {SALT_ENV_VAR}")
    return value
