"""Cheap structural checks of a result set against its source series, run on every job's
results before they are stored (the validator checks each object against its IOD; these
check the objects against each other and against the source):

* every result is of the source's study and patient, in a series of its own, and no two
  instances (results or source) share a SOP Instance UID;
* the SEG references the source series, every instance it names is one of the source's, its
  frames are on the source's grid (Rows, Columns, Frame of Reference) and there are as many
  per-frame entries as frames;
* every instance the SR or an overlay references is in the source series or the result set;
* every result is labelled as an AI result that needs review (Series Description, and the
  SEG's Content Description), and the overlay says its annotation is burned in.

Each problem is a short sentence naming the object and the attribute, never a value that
may be patient data.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence

from pydicom.dataset import Dataset

from radserve.dicom_io.reading.series import ImageSeries

REVIEW_LABEL = "requires review"
# Where an SR or an overlay references other instances: its content tree, its sources.
_CONTENT_REFERENCES = ("ContentSequence", "SourceImageSequence", "ReferencedImageSequence")


def structural_problems(results: Sequence[Dataset], series: ImageSeries) -> list[str]:
    """What is wrong with ``results`` (a job's SEG, SR and overlay, in any number and order)
    as the results of ``series`` (empty: nothing)."""
    source = series.headers
    first = source[0]
    source_uids = {str(ds.SOPInstanceUID) for ds in source}
    known = source_uids | {str(ds.SOPInstanceUID) for ds in results}
    problems: list[str] = []
    counts = Counter([*source_uids, *(str(ds.SOPInstanceUID) for ds in results)])
    if any(n > 1 for n in counts.values()):
        problems.append("two instances share a SOP Instance UID")
    for ds in results:
        kind = _kind(ds)
        for keyword in ("StudyInstanceUID", "PatientID"):
            if ds.get(keyword) != first.get(keyword):
                problems.append(f"{kind}: {keyword} differs from the source's")
        if ds.get("SeriesInstanceUID") == first.get("SeriesInstanceUID"):
            problems.append(f"{kind}: in the source series")
        if REVIEW_LABEL not in str(ds.get("SeriesDescription", "")):
            problems.append(f"{kind}: Series Description lacks the AI review label")
        if kind == "SEG":
            problems += _seg_problems(ds, source, source_uids)
            continue
        unknown = {uid for uid in _references(ds, _CONTENT_REFERENCES) if uid not in known}
        if unknown:
            problems.append(f"{kind}: references {len(unknown)} instance(s) not in the study")
        if kind == "SC" and ds.get("BurnedInAnnotation") != "YES":
            problems.append("SC: Burned In Annotation is not YES")
    return list(dict.fromkeys(problems))


def _seg_problems(seg: Dataset, source: Sequence[Dataset], source_uids: set[str]) -> list[str]:
    first = source[0]
    problems = []
    if REVIEW_LABEL not in str(seg.get("ContentDescription", "")):
        problems.append("SEG: Content Description lacks the AI review label")
    referenced = seg.get("ReferencedSeriesSequence") or []
    if [str(item.SeriesInstanceUID) for item in referenced] != [str(first.SeriesInstanceUID)]:
        problems.append("SEG: Referenced Series Sequence does not name the source series")
    named = {
        str(instance.ReferencedSOPInstanceUID)
        for item in referenced
        for instance in item.get("ReferencedInstanceSequence", [])
    }
    if named - source_uids:
        problems.append("SEG: Referenced Instance Sequence names instances not in the source")
    for keyword in ("Rows", "Columns", "FrameOfReferenceUID"):
        if seg.get(keyword) != first.get(keyword):
            problems.append(f"SEG: {keyword} differs from the source's")
    frames = int(seg.get("NumberOfFrames", 0))
    if frames != len(seg.get("PerFrameFunctionalGroupsSequence", [])):
        problems.append("SEG: Number of Frames differs from the per-frame functional groups")
    derived_from = set(_references(seg, ("PerFrameFunctionalGroupsSequence",)))
    if derived_from - source_uids:
        problems.append("SEG: frames are derived from instances not in the source")
    return problems


def _references(ds: Dataset, keywords: Sequence[str]) -> Iterator[str]:
    """Every Referenced SOP Instance UID under the top-level sequences ``keywords`` (the
    references radserve makes; a copied Referenced Study Sequence is the source's own)."""
    for keyword in keywords:
        for item in ds.get(keyword) or []:
            for element in item.iterall():
                if element.keyword == "ReferencedSOPInstanceUID" and element.value:
                    yield str(element.value)


def _kind(ds: Dataset) -> str:
    modality = str(ds.get("Modality", ""))
    return modality if modality in ("SEG", "SR") else "SC"
