"""The source header as a derived object (SEG, SR, SC) may copy it.

Derived objects copy the Patient and Study modules of their source. Real archives hold values
that break the standard (a 17-character Study ID, a missing Type 2 attribute); copied as they
are, every result would fail validation, and a date that is not a DICOM date (``1970-01-01``)
makes highdicom refuse to write the SR at all. :func:`source_for_derivation` gives a copy in
which over-long strings are cut to their VR's limit, dates and times that are not in their
VR's form are emptied, and missing Type 2 attributes are present and empty, so that the
results are valid whatever the source. :func:`set_series_date_time`
dates a derived series.
"""

from __future__ import annotations

import copy
import datetime
import logging
import re
from collections.abc import Sequence

from pydicom.dataset import Dataset

logger = logging.getLogger(__name__)

# Maximum value length of the string VRs (PS3.5 6.2), in characters.
MAX_LENGTH = {"AE": 16, "CS": 16, "SH": 16, "LO": 64, "PN": 64, "DS": 16, "IS": 12}
# The forms of the date and time VRs (PS3.5 6.2), without the range matching of queries.
_TIME = r"[0-9]{2}([0-9]{2}([0-9]{2}(\.[0-9]{1,6})?)?)?"
DATE_TIME_FORMS = {
    "DA": re.compile(r"[0-9]{8}"),
    "TM": re.compile(_TIME),
    "DT": re.compile(r"[0-9]{4}([0-9]{2}([0-9]{2}" + _TIME + r"?)?)?([+-][0-9]{4})?"),
}
# Type 2 attributes of the Patient and General Study modules that derived objects copy.
TYPE2_PATIENT_STUDY = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)


def source_for_derivation(header: Dataset) -> Dataset:
    """A copy of ``header`` that a derived object can copy from and stay valid.

    The caller's dataset is not changed. Only attribute names are logged, never values.
    """
    result = Dataset()
    if hasattr(header, "file_meta"):
        result.file_meta = header.file_meta
    cut, emptied = [], []
    for element in header:
        limit = MAX_LENGTH.get(element.VR)
        form = DATE_TIME_FORMS.get(element.VR)
        value = element.value
        if limit is not None and isinstance(value, str) and len(value) > limit:
            element = copy.deepcopy(element)
            element.value = value[:limit]
            cut.append(element.keyword or str(element.tag))
        elif (
            form is not None
            and isinstance(value, str)
            and value.strip()
            and not form.fullmatch(value.strip())
        ):
            element = copy.deepcopy(element)
            element.value = ""
            emptied.append(element.keyword or str(element.tag))
        result.add(element)
    for keyword in TYPE2_PATIENT_STUDY:
        if keyword not in result:
            setattr(result, keyword, "")
    if cut:
        logger.info("source values longer than their VR allows were cut: %s", ", ".join(cut))
    if emptied:
        logger.info(
            "source dates and times not in their VR's form were left empty: %s", ", ".join(emptied)
        )
    return result


def set_series_date_time(instances: Sequence[Dataset]) -> None:
    """Give a derived series its Series Date and Time (0008,0021 / 0008,0031).

    The series was created when its first instance was: that instance's Content Date and
    Time, else the time now. Every instance of the series gets the same values, so viewers
    and PACS sort and list the result series by when they were made.
    """
    if not instances:
        return
    first = instances[0]
    date, time = first.get("ContentDate"), first.get("ContentTime")
    if not date or not time:
        now = datetime.datetime.now()
        date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S.%f")
    for ds in instances:
        ds.SeriesDate = date
        ds.SeriesTime = time
