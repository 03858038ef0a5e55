"""Coded concepts and UCUM units for PyRadiomics features.

PyRadiomics names a feature ``<image type>_<class>_<feature>`` (``original_glcm_Contrast``).
Features of the original image that the Image Biomarker Standardisation Initiative defines
get their IBSI code (coding scheme ``IBSI``, DICOM CP-1764), from PyRadiomics' own mapping
``data/featuresDict_IBSIv7.tsv`` with its known errors corrected (:data:`CORRECTIONS`).

Every other feature (no IBSI equivalent, or computed on a filtered image, whose value IBSI
chapter 1 does not define) gets a code in radserve's private coding scheme ``99RADSERVE``:
the code value is ``R`` followed by the first 12 hexadecimal digits (upper case) of the
SHA-256 of the PyRadiomics feature name, and the code meaning is the feature name itself.
The code is therefore stable, needs no registry, and anyone can recompute it. An SR that
uses the scheme identifies it in its Coding Scheme Identification Sequence (0008,0110) with
:data:`PRIVATE_SCHEME_NAME`, :data:`PRIVATE_SCHEME_VERSION` and
:data:`PRIVATE_SCHEME_ORGANIZATION` (see :data:`radserve.radiomics.sr_features.CODING_SCHEMES`);
``IBSI`` is a PS3.16 Table 8-1 scheme and needs no such item.
"""

from __future__ import annotations

import csv
import functools
import hashlib
from dataclasses import dataclass
from importlib import resources

from radserve.dicom_io import Code

IBSI_SCHEME = "IBSI"
PRIVATE_SCHEME = "99RADSERVE"
# For the SR's Coding Scheme Identification Sequence (where a private scheme is identified).
PRIVATE_SCHEME_NAME = "radserve radiomic features"
PRIVATE_SCHEME_VERSION = "1"
PRIVATE_SCHEME_ORGANIZATION = "radserve"
_MAPPING_FILE = "featuresDict_IBSIv7.tsv"


@dataclass(frozen=True)
class IbsiConcept:
    """An IBSI feature: its code and its name in the IBSI reference manual."""

    code: str
    meaning: str


# Rows of featuresDict_IBSIv7.tsv that are wrong, keyed by (class, feature) as written there;
# None drops the row, a pair replaces its PyRadiomics class and feature name.
CORRECTIONS: dict[tuple[str, str], tuple[str, str] | None] = {
    # The GLSZM small/large area grey level emphases are listed under the class "glcm".
    ("glcm", "SmallAreaLowGrayLevelEmphasis"): ("glszm", "SmallAreaLowGrayLevelEmphasis"),
    ("glcm", "SmallAreaHighGrayLevelEmphasis"): ("glszm", "SmallAreaHighGrayLevelEmphasis"),
    ("glcm", "LargeAreaLowGrayLevelEmphasis"): ("glszm", "LargeAreaLowGrayLevelEmphasis"),
    ("glcm", "LargeAreaHighGrayLevelEmphasis"): ("glszm", "LargeAreaHighGrayLevelEmphasis"),
    # S1RA and K26C are the grey level *distance* zone (GLDZM) emphases, which PyRadiomics
    # does not compute; the GLSZM ones (XMSY, 5GN9) are added in ADDITIONS.
    ("glszm", "LowGreyLevelZoneEmphasis"): None,
    ("glszm", "HighGreyLevelZoneEmphasis"): None,
    # PyRadiomics' axis lengths use the population covariance (N) where IBSI uses the sample
    # covariance (N - 1), so they are not IBSI's features: coded 99RADSERVE (as Kurtosis,
    # which is not IBSI's excess kurtosis and which the file leaves out for that reason).
    ("shape", "MajorAxisLength"): None,
    ("shape", "MinorAxisLength"): None,
    ("shape", "LeastAxisLength"): None,
    # PyRadiomics 3 renamed these two GLSZM features.
    ("glszm", "ZoneSizeVariance"): ("glszm", "ZoneVariance"),
    ("glszm", "ZoneSizeEntropy"): ("glszm", "ZoneEntropy"),
}
# Mappings missing from the file: (class, feature) -> IBSI concept. Each equals the IBSI
# reference value on the IBSI digital phantom (docs/ibsi_conformance.md).
ADDITIONS: dict[tuple[str, str], IbsiConcept] = {
    ("glszm", "LowGrayLevelZoneEmphasis"): IbsiConcept("XMSY", "Low grey level zone emphasis"),
    ("glszm", "HighGrayLevelZoneEmphasis"): IbsiConcept("5GN9", "High grey level zone emphasis"),
    ("glcm", "Autocorrelation"): IbsiConcept("QWB0", "Autocorrelation"),
    ("glcm", "Imc1"): IbsiConcept("R8DG", "First measure of information correlation"),
    ("glcm", "Imc2"): IbsiConcept("JN9H", "Second measure of information correlation"),
}

# UCUM units.
NO_UNITS = Code("1", "UCUM", "no units")
MILLIMETER = Code("mm", "UCUM", "millimeter")
SQUARE_MILLIMETER = Code("mm2", "UCUM", "square millimeter")
CUBIC_MILLIMETER = Code("mm3", "UCUM", "cubic millimeter")
PER_MILLIMETER = Code("/mm", "UCUM", "per millimeter")
HOUNSFIELD_UNIT = Code("[hnsf'U]", "UCUM", "Hounsfield unit")
HOUNSFIELD_UNIT_SQUARED = Code("[hnsf'U]2", "UCUM", "Hounsfield unit squared")
HOUNSFIELD_UNIT_SQUARED_VOLUME = Code(
    "[hnsf'U]2.mm3", "UCUM", "Hounsfield unit squared cubic millimeter"
)
ARBITRARY_UNIT = Code("[arb'U]", "UCUM", "arbitrary unit")

_SHAPE_UNITS: dict[str, Code] = {
    "MeshVolume": CUBIC_MILLIMETER,
    "VoxelVolume": CUBIC_MILLIMETER,
    "SurfaceArea": SQUARE_MILLIMETER,
    "MeshSurface": SQUARE_MILLIMETER,
    "PixelSurface": SQUARE_MILLIMETER,
    "SurfaceVolumeRatio": PER_MILLIMETER,
    "PerimeterSurfaceRatio": PER_MILLIMETER,
    "Perimeter": MILLIMETER,
    "Maximum3DDiameter": MILLIMETER,
    "Maximum2DDiameterSlice": MILLIMETER,
    "Maximum2DDiameterColumn": MILLIMETER,
    "Maximum2DDiameterRow": MILLIMETER,
    "MaximumDiameter": MILLIMETER,
    "MajorAxisLength": MILLIMETER,
    "MinorAxisLength": MILLIMETER,
    "LeastAxisLength": MILLIMETER,
}
# First order features in the unit of the image values (I), its square, or I^2 x volume.
_INTENSITY = frozenset(
    {
        "10Percentile",
        "90Percentile",
        "Maximum",
        "Minimum",
        "Mean",
        "Median",
        "InterquartileRange",
        "Range",
        "MeanAbsoluteDeviation",
        "RobustMeanAbsoluteDeviation",
        "RootMeanSquared",
        "StandardDeviation",
    }
)
_INTENSITY_SQUARED = frozenset({"Energy", "Variance"})
_INTENSITY_SQUARED_VOLUME = frozenset({"TotalEnergy"})


@dataclass(frozen=True)
class FeatureName:
    """The parts of a PyRadiomics feature name ``<image type>_<class>_<feature>``."""

    image_type: str
    feature_class: str
    feature: str

    @classmethod
    def parse(cls, name: str) -> FeatureName:
        """Split a PyRadiomics feature name.

        Raises:
            ValueError: The name does not have the three parts.
        """
        parts = name.rsplit("_", 2)
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"not a PyRadiomics feature name: {name!r}")
        return cls(image_type=parts[0], feature_class=parts[1], feature=parts[2])

    def __str__(self) -> str:
        return f"{self.image_type}_{self.feature_class}_{self.feature}"


@functools.cache
def ibsi_mapping() -> dict[tuple[str, str], IbsiConcept]:
    """PyRadiomics (class, feature) to IBSI concept, corrected (see :data:`CORRECTIONS`)."""
    text = resources.files("radserve.radiomics").joinpath("data", _MAPPING_FILE).read_text("utf-8")
    mapping: dict[tuple[str, str], IbsiConcept] = {}
    for row in csv.DictReader(text.splitlines(), delimiter="\t"):
        feature_class = (row.get("pyradiomics_feature_class") or "").strip()
        feature = (row.get("pyradiomics_feature_name") or "").strip()
        if not feature_class or not feature:
            continue
        key: tuple[str, str] | None = (feature_class, feature)
        if key in CORRECTIONS:
            key = CORRECTIONS[(feature_class, feature)]
        if key is None:
            continue
        mapping[key] = IbsiConcept(row["IBSI_code"].strip(), row["IBSI_meaning"].strip())
    mapping.update(ADDITIONS)
    return mapping


def ibsi_concept(feature_class: str, feature: str) -> IbsiConcept | None:
    """The IBSI concept of a PyRadiomics feature, or None when IBSI defines none."""
    return ibsi_mapping().get((feature_class, feature))


def private_code(name: str) -> Code:
    """The ``99RADSERVE`` code of a PyRadiomics feature name (see the module docstring)."""
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:12].upper()
    return Code(f"R{digest}", PRIVATE_SCHEME, name[:64])


def feature_code(name: str) -> Code:
    """The concept name of a feature in DICOM: its IBSI code for features of the original
    image that IBSI defines, else its ``99RADSERVE`` code."""
    parts = FeatureName.parse(name)
    concept = ibsi_concept(parts.feature_class, parts.feature)
    if parts.image_type == "original" and concept is not None:
        return Code(concept.code, IBSI_SCHEME, concept.meaning)
    return private_code(name)


def feature_unit(name: str, *, modality: str | None) -> Code:
    """The UCUM unit of a feature's value.

    Shape features are in millimetres. First order features of the original image are in
    Hounsfield units for CT; those of filtered images, and of other modalities, are in an
    arbitrary unit (``[arb'U]``). Texture features are dimensionless.
    """
    parts = FeatureName.parse(name)
    if parts.feature_class.startswith("shape"):
        return _SHAPE_UNITS.get(parts.feature, NO_UNITS)
    if parts.feature_class != "firstorder":
        return NO_UNITS
    hounsfield = parts.image_type == "original" and (modality or "").upper() == "CT"
    if parts.feature in _INTENSITY:
        return HOUNSFIELD_UNIT if hounsfield else ARBITRARY_UNIT
    if parts.feature in _INTENSITY_SQUARED:
        return HOUNSFIELD_UNIT_SQUARED if hounsfield else ARBITRARY_UNIT
    if parts.feature in _INTENSITY_SQUARED_VOLUME:
        return HOUNSFIELD_UNIT_SQUARED_VOLUME if hounsfield else ARBITRARY_UNIT
    return NO_UNITS
