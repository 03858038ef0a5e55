"""The burned-in colour overlay: a Secondary Capture series for viewers that cannot show SEG.

One classic single-frame Secondary Capture Image (the most widely displayed SOP class) per
source slice: the grey-scale slice with each segment's outline, a legend and a banner naming
the model and saying that the result needs review. The plain SC IOD has no Image Plane or
Frame of Reference module, so the instances carry Patient Orientation and Pixel Spacing (of the
zoomed image) only; a viewer cannot register them to the source, which is what SEG is for.

Encoding: JPEG-LS lossless by default. The rendered slices (grey image zoomed by pixel
replication, flat bands, thin outlines) compress about 11x on a zoomed 143x161 CT and 5x on a
512x512 CT, with the pixels decoded back exactly; RLE Lossless (4x and 3x) is the choice for a
destination that decodes nothing else, Explicit VR Little Endian for one that decodes nothing.
A lossy JPEG would smear the coloured outlines (errors up to 115 of 255 next to them).
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import highdicom as hd
import numpy as np
import numpy.typing as npt
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless, RLELossless

from radserve.dicom_io.algorithm import MANUFACTURER, AlgorithmIdentity, contributing_equipment
from radserve.dicom_io.derived import set_series_date_time, source_for_derivation
from radserve.dicom_io.errors import DicomIOError
from radserve.dicom_io.masks.labelmap import LabelMap
from radserve.dicom_io.reading.series import ImageSeries
from radserve.dicom_io.sc.render import SliceRenderer, key_slice, window_from_headers
from radserve.dicom_io.uids import derive_uid

logger = logging.getLogger(__name__)

SECONDARY_CAPTURE_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
#: The transfer syntaxes the overlay can be written in: lossless only, smallest first.
OVERLAY_TRANSFER_SYNTAXES = (JPEGLSLossless, RLELossless, ExplicitVRLittleEndian)

# Patient, Clinical Trial Subject, General Study, Patient Study and Clinical Trial Study
# attributes copied from the source so the overlay files into the same patient and study.
_COPIED_KEYWORDS = (
    "SpecificCharacterSet",
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "IssuerOfPatientIDQualifiersSequence",
    "TypeOfPatientID",
    "PatientBirthDate",
    "PatientBirthTime",
    "PatientSex",
    "OtherPatientIDsSequence",
    "PatientComments",
    "PatientSpeciesDescription",
    "PatientSpeciesCodeSequence",
    "PatientBreedDescription",
    "PatientBreedCodeSequence",
    "BreedRegistrationSequence",
    "ResponsiblePerson",
    "ResponsiblePersonRole",
    "ResponsibleOrganization",
    "PatientIdentityRemoved",
    "DeidentificationMethod",
    "DeidentificationMethodCodeSequence",
    "ClinicalTrialSponsorName",
    "ClinicalTrialProtocolID",
    "ClinicalTrialProtocolName",
    "ClinicalTrialSiteID",
    "ClinicalTrialSiteName",
    "ClinicalTrialSubjectID",
    "ClinicalTrialSubjectReadingID",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "ReferringPhysicianIdentificationSequence",
    "StudyID",
    "AccessionNumber",
    "IssuerOfAccessionNumberSequence",
    "StudyDescription",
    "ProcedureCodeSequence",
    "AdmittingDiagnosesDescription",
    "PatientAge",
    "PatientSize",
    "PatientWeight",
    "ClinicalTrialTimePointID",
    "ClinicalTrialTimePointDescription",
)
# Letters for the +/- directions of the L, P and H patient axes.
_LPS_LETTERS = (("L", "R"), ("P", "A"), ("H", "F"))
REVIEW_NOTE = "AI result - requires review by a qualified physician before diagnostic use."


def _patient_and_study(source: Dataset) -> Dataset:
    """The Patient, Study and laterality attributes of the source, as the overlay carries them."""
    copied = Dataset()
    derivable = source_for_derivation(source)
    for keyword in _COPIED_KEYWORDS:
        if keyword in derivable:
            copied[keyword] = copy.deepcopy(derivable[keyword])
    # Laterality is required for a paired body part unless Image Laterality is sent; the
    # overlay states what the source states, and "unknown" (empty) when it says nothing.
    if source.get("Laterality"):
        copied.Laterality = source.Laterality
    elif source.get("ImageLaterality"):
        copied.ImageLaterality = source.ImageLaterality
    else:
        copied.Laterality = None
    return copied


def _element_copies(ds: Dataset) -> Dataset:
    """New elements with the values of ``ds``'s, so no two instances share a mutable element.

    Much cheaper than ``copy.deepcopy`` for the same result: plain values (str, PersonName,
    numbers) are immutable and shared; lists of values and sequences are copied.
    """
    copied = Dataset()
    for element in ds:
        if element.VR == "SQ":
            copied.add(copy.deepcopy(element))
            continue
        value = copy.copy(element.value) if isinstance(element.value, MultiValue) else element.value
        copied.add(DataElement(element.tag, element.VR, value, already_converted=True))
    return copied


def _orientation_letters(axis: npt.NDArray[np.float64]) -> str:
    """Patient Orientation letters of one LPS direction, principal first (PS3.3 C.7.6.1.1.1)."""
    letters = []
    for n in np.argsort(-np.abs(axis))[:3]:
        if abs(axis[n]) < 0.1:  # below ~6 degrees a refinement letter is noise
            break
        positive, negative = _LPS_LETTERS[n]
        letters.append(positive if axis[n] > 0 else negative)
    return "".join(letters)


def _source_reference(header: Dataset, frame_number: int | None) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = header.SOPClassUID
    item.ReferencedSOPInstanceUID = header.SOPInstanceUID
    if frame_number is not None:
        item.ReferencedFrameNumber = frame_number
    purpose = Dataset()
    purpose.CodeValue = "121322"
    purpose.CodingSchemeDesignator = "DCM"
    purpose.CodeMeaning = "Source image for image processing operation"
    item.PurposeOfReferenceCodeSequence = Sequence([purpose])
    return item


def _slices_to_write(source: ImageSeries, labelmap: LabelMap, only_segmented: bool) -> list[int]:
    n_slices = source.volume.shape[0]
    if not only_segmented:
        return list(range(n_slices))
    wanted = [s.label for s in labelmap.segments]
    counts = np.isin(np.asarray(labelmap.volume.array), wanted).sum(axis=(1, 2))
    if not counts.any():
        # No findings: one key image (the middle slice) whose legend says so.
        return [key_slice(labelmap)]
    return [int(k) for k in np.flatnonzero(counts)]


def write_overlay_sc(
    source: ImageSeries,
    labelmap: LabelMap,
    *,
    algorithm: AlgorithmIdentity,
    series_number: int = 903,
    window_hu: tuple[float, float] | None = None,
    only_segmented_slices: bool = False,
    transfer_syntax_uid: str = JPEGLSLossless,
) -> list[Dataset]:
    """Build the burned-in overlay series: one RGB Secondary Capture Image per source slice.

    UIDs are derived from the source Series Instance UID, the model name and version and the
    slice index, so a rerun gives the same instances.

    Args:
        source: The image series the label map was made on.
        labelmap: Segments on the source grid.
        algorithm: The model that made the label map (banner, Contributing Equipment).
        series_number: Series Number of the new series.
        window_hu: ``(center, width)``; default: the source's Window Center / Width, else the
            CT soft-tissue window for CT, else the volume's range.
        only_segmented_slices: Write only slices where a segment has voxels (the middle
            slice alone when no segment has any: a "no segment found" key image).
        transfer_syntax_uid: How the pixels are encoded, one of
            :data:`OVERLAY_TRANSFER_SYNTAXES` (all lossless): JPEG-LS Lossless (default,
            smallest), RLE Lossless (decoded by every DICOM toolkit) or Explicit VR Little
            Endian (uncompressed).

    Returns:
        The instances in slice order (Instance Number ``k + 1`` for source slice ``k``).

    Raises:
        MaskError: The label map is not on the source grid.
        DicomIOError: The source lacks the headers or UIDs the overlay must reference.
        ValueError: ``transfer_syntax_uid`` is not one of :data:`OVERLAY_TRANSFER_SYNTAXES`.
    """
    if transfer_syntax_uid not in OVERLAY_TRANSFER_SYNTAXES:
        raise ValueError(
            f"the overlay is written in one of {', '.join(OVERLAY_TRANSFER_SYNTAXES)}, "
            f"not {transfer_syntax_uid}"
        )
    multiframe = _check_source(source)
    if window_hu is None:
        window_hu = window_from_headers(source.headers)
    model = f"{algorithm.name} {algorithm.version}"
    renderer = SliceRenderer(
        source.volume, labelmap, window_hu=window_hu, caption=f"Model: {model}"
    )
    series = _series_values(source, algorithm, renderer, series_number, transfer_syntax_uid)
    instances: list[Dataset] = []
    for k in _slices_to_write(source, labelmap, only_segmented_slices):
        header = source.headers[0] if multiframe else source.headers[k]
        frame_number = source.volume.frame_numbers[k] if multiframe else None
        sc = _instance(series, renderer.render(k), k)
        sc.SourceImageSequence = Sequence([_source_reference(header, frame_number)])
        instances.append(sc)
    set_series_date_time(instances)
    logger.info("overlay series: %d Secondary Capture instances", len(instances))
    return instances


def _check_source(source: ImageSeries) -> bool:
    """Check that the source has what the overlay references; whether it is multi-frame."""
    volume = source.volume
    n_slices = volume.shape[0]
    multiframe = len(source.headers) == 1 and n_slices > 1
    if len(source.headers) not in (1, n_slices) or (
        multiframe and len(volume.frame_numbers) != n_slices
    ):
        raise DicomIOError(
            f"source has {len(source.headers)} header(s) for {n_slices} slices; need one per "
            "slice, or one multi-frame instance with frame numbers"
        )
    first = source.headers[0]
    if not _source_series_uid(source) or not first.get("StudyInstanceUID"):
        raise DicomIOError("source series lacks a Study or Series Instance UID")
    for n, header in enumerate(source.headers):
        if not header.get("SOPInstanceUID") or not header.get("SOPClassUID"):
            raise DicomIOError(
                f"source instance {n + 1} lacks the SOP Instance or SOP Class UID to reference"
            )
    return multiframe


def _source_series_uid(source: ImageSeries) -> str:
    first = source.headers[0]
    return source.volume.series_instance_uid or str(first.get("SeriesInstanceUID", ""))


@dataclass(frozen=True)
class _SeriesValues:
    """What every instance of one overlay series shares."""

    algorithm: AlgorithmIdentity
    source_series_uid: str
    study_instance_uid: str
    series_instance_uid: str
    series_number: int
    series_description: str
    pixel_spacing_mm: tuple[float, float]
    orientation: tuple[str, str]
    derivation: str
    patient_and_study: Dataset
    transfer_syntax_uid: str

    @property
    def model(self) -> str:
        return f"{self.algorithm.name} {self.algorithm.version}"


def _series_values(
    source: ImageSeries,
    algorithm: AlgorithmIdentity,
    renderer: SliceRenderer,
    series_number: int,
    transfer_syntax_uid: str,
) -> _SeriesValues:
    volume = source.volume
    model = f"{algorithm.name} {algorithm.version}"
    center, width = renderer.window_hu
    source_series_uid = _source_series_uid(source)
    direction = np.asarray(volume.direction, dtype=np.float64)
    return _SeriesValues(
        algorithm=algorithm,
        source_series_uid=source_series_uid,
        study_instance_uid=str(source.headers[0].StudyInstanceUID),
        series_instance_uid=derive_uid(source_series_uid, algorithm.name, algorithm.version, "SC"),
        series_number=series_number,
        series_description=f"AI overlay ({model})"[:46] + " - requires review",
        pixel_spacing_mm=(
            volume.spacing_mm[1] / renderer.scale,
            volume.spacing_mm[0] / renderer.scale,
        ),
        orientation=(
            _orientation_letters(direction[:, 0]),
            _orientation_letters(direction[:, 1]),
        ),
        derivation=(
            f"Source slice rendered with the outlines of the segments found by {model} "
            f"(window center {center:g} / width {width:g}, zoom x{renderer.scale}, legend and "
            "banner burned in). "
            f"{REVIEW_NOTE}"
        ),
        patient_and_study=_patient_and_study(source.headers[0]),
        transfer_syntax_uid=transfer_syntax_uid,
    )


def _instance(series: _SeriesValues, rgb: npt.NDArray[np.uint8], k: int) -> Dataset:
    """The Secondary Capture instance of rendered source slice ``k``."""
    algorithm, model = series.algorithm, series.model
    orientation = series.orientation
    sc = hd.sc.SCImage(
        pixel_array=rgb,
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        study_instance_uid=series.study_instance_uid,
        series_instance_uid=series.series_instance_uid,
        series_number=series.series_number,
        sop_instance_uid=derive_uid(
            series.source_series_uid, algorithm.name, algorithm.version, "SC", str(k)
        ),
        instance_number=k + 1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=model[:64],
        software_versions=algorithm.software_versions[:64],
        series_description=series.series_description,
        pixel_spacing=series.pixel_spacing_mm,
        patient_orientation=(orientation[0][0], orientation[1][0]),
        transfer_syntax_uid=series.transfer_syntax_uid,
    )
    sc.update(_element_copies(series.patient_and_study))
    sc.PatientOrientation = list(orientation)
    sc.ImageType = ["DERIVED", "SECONDARY"]
    sc.ConversionType = "WSD"
    sc.SecondaryCaptureDeviceManufacturer = MANUFACTURER
    sc.SecondaryCaptureDeviceManufacturerModelName = model[:64]
    sc.SecondaryCaptureDeviceSoftwareVersions = algorithm.software_versions[:64]
    sc.BurnedInAnnotation = "YES"
    sc.DerivationDescription = series.derivation
    # Set as a plain element: highdicom types this attribute as its own item class.
    sc["ContributingEquipmentSequence"] = DataElement(
        "ContributingEquipmentSequence", "SQ", contributing_equipment(algorithm)
    )
    return sc
