"""IBSI chapter 1 digital phantom: radserve's extraction against the reference values.

:func:`run_phantom` extracts every PyRadiomics feature from the IBSI digital phantom (no
resampling, the phantom's own grey levels: fixed bin width 1 from 1, no intensity shift)
and compares each feature that has an IBSI counterpart with the consensus reference value
and tolerance. PyRadiomics averages its GLCM and GLRLM features over the 13 directions of
3D matrices, so these are compared with the ``3D_avg`` references; the others with ``3D``.
:func:`write_conformance` writes ``docs/ibsi_conformance.md`` (``bench/ibsi_conformance.py``).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import radserve.radiomics.pyradiomics_compat as pyradiomics_compat
from radserve.radiomics.codes import ADDITIONS, CORRECTIONS, ibsi_concept
from radserve.radiomics.extract import extract_features
from radserve.radiomics.inputs import read_case
from radserve.radiomics.params import ParameterSet

PHANTOM_IMAGE = Path("nifti/image/phantom.nii.gz")
PHANTOM_MASK = Path("nifti/mask/mask.nii.gz")
REFERENCE_FILE = Path("reference_values.csv")
SIGNIFICANT_DIGITS = 3

# PyRadiomics (class, feature) -> IBSI reference tag, for every feature with an IBSI twin.
_SHAPE = {
    "MeshVolume": "morph_volume",
    "VoxelVolume": "morph_vol_approx",
    "SurfaceArea": "morph_area_mesh",
    "SurfaceVolumeRatio": "morph_av",
    "Compactness1": "morph_comp_1",
    "Compactness2": "morph_comp_2",
    "SphericalDisproportion": "morph_sph_dispr",
    "Sphericity": "morph_sphericity",
    "Maximum3DDiameter": "morph_diam",
    "MajorAxisLength": "morph_pca_maj_axis",
    "MinorAxisLength": "morph_pca_min_axis",
    "LeastAxisLength": "morph_pca_least_axis",
    "Elongation": "morph_pca_elongation",
    "Flatness": "morph_pca_flatness",
}
_FIRSTORDER = {
    "Mean": "stat_mean",
    "Variance": "stat_var",
    "Skewness": "stat_skew",
    "Kurtosis": "stat_kurt",
    "Median": "stat_median",
    "Minimum": "stat_min",
    "10Percentile": "stat_p10",
    "90Percentile": "stat_p90",
    "Maximum": "stat_max",
    "InterquartileRange": "stat_iqr",
    "Range": "stat_range",
    "MeanAbsoluteDeviation": "stat_mad",
    "RobustMeanAbsoluteDeviation": "stat_rmad",
    "Energy": "stat_energy",
    "RootMeanSquared": "stat_rms",
    "Entropy": "ih_entropy",
    "Uniformity": "ih_uniformity",
}
_GLCM = {
    "MaximumProbability": "cm_joint_max",
    "JointAverage": "cm_joint_avg",
    "SumSquares": "cm_joint_var",
    "JointEntropy": "cm_joint_entr",
    "DifferenceAverage": "cm_diff_avg",
    "DifferenceVariance": "cm_diff_var",
    "DifferenceEntropy": "cm_diff_entr",
    "SumAverage": "cm_sum_avg",
    "SumVariance": "cm_sum_var",
    "SumEntropy": "cm_sum_entr",
    "JointEnergy": "cm_energy",
    "Contrast": "cm_contrast",
    "Dissimilarity": "cm_dissimilarity",
    "Id": "cm_inv_diff",
    "Idn": "cm_inv_diff_norm",
    "Idm": "cm_inv_diff_mom",
    "Idmn": "cm_inv_diff_mom_norm",
    "InverseVariance": "cm_inv_var",
    "Correlation": "cm_corr",
    "Autocorrelation": "cm_auto_corr",
    "ClusterTendency": "cm_clust_tend",
    "ClusterShade": "cm_clust_shade",
    "ClusterProminence": "cm_clust_prom",
    "Imc1": "cm_info_corr1",
    "Imc2": "cm_info_corr2",
}
_GLRLM = {
    "ShortRunEmphasis": "rlm_sre",
    "LongRunEmphasis": "rlm_lre",
    "LowGrayLevelRunEmphasis": "rlm_lgre",
    "HighGrayLevelRunEmphasis": "rlm_hgre",
    "ShortRunLowGrayLevelEmphasis": "rlm_srlge",
    "ShortRunHighGrayLevelEmphasis": "rlm_srhge",
    "LongRunLowGrayLevelEmphasis": "rlm_lrlge",
    "LongRunHighGrayLevelEmphasis": "rlm_lrhge",
    "GrayLevelNonUniformity": "rlm_glnu",
    "GrayLevelNonUniformityNormalized": "rlm_glnu_norm",
    "RunLengthNonUniformity": "rlm_rlnu",
    "RunLengthNonUniformityNormalized": "rlm_rlnu_norm",
    "RunPercentage": "rlm_r_perc",
    "GrayLevelVariance": "rlm_gl_var",
    "RunVariance": "rlm_rl_var",
    "RunEntropy": "rlm_rl_entr",
}
_GLSZM = {
    "SmallAreaEmphasis": "szm_sze",
    "LargeAreaEmphasis": "szm_lze",
    "LowGrayLevelZoneEmphasis": "szm_lgze",
    "HighGrayLevelZoneEmphasis": "szm_hgze",
    "SmallAreaLowGrayLevelEmphasis": "szm_szlge",
    "SmallAreaHighGrayLevelEmphasis": "szm_szhge",
    "LargeAreaLowGrayLevelEmphasis": "szm_lzlge",
    "LargeAreaHighGrayLevelEmphasis": "szm_lzhge",
    "GrayLevelNonUniformity": "szm_glnu",
    "GrayLevelNonUniformityNormalized": "szm_glnu_norm",
    "SizeZoneNonUniformity": "szm_zsnu",
    "SizeZoneNonUniformityNormalized": "szm_zsnu_norm",
    "ZonePercentage": "szm_z_perc",
    "GrayLevelVariance": "szm_gl_var",
    "ZoneVariance": "szm_zs_var",
    "ZoneEntropy": "szm_zs_entr",
}
_GLDM = {  # PyRadiomics' GLDM with alpha 0 and distance 1 is IBSI's NGLDM
    "SmallDependenceEmphasis": "ngl_lde",
    "LargeDependenceEmphasis": "ngl_hde",
    "LowGrayLevelEmphasis": "ngl_lgce",
    "HighGrayLevelEmphasis": "ngl_hgce",
    "SmallDependenceLowGrayLevelEmphasis": "ngl_ldlge",
    "SmallDependenceHighGrayLevelEmphasis": "ngl_ldhge",
    "LargeDependenceLowGrayLevelEmphasis": "ngl_hdlge",
    "LargeDependenceHighGrayLevelEmphasis": "ngl_hdhge",
    "GrayLevelNonUniformity": "ngl_glnu",
    "GrayLevelNonUniformityNormalized": "ngl_glnu_norm",
    "DependenceNonUniformity": "ngl_dcnu",
    "DependenceNonUniformityNormalized": "ngl_dcnu_norm",
    "DependencePercentage": "ngl_dc_perc",
    "GrayLevelVariance": "ngl_gl_var",
    "DependenceVariance": "ngl_dc_var",
    "DependenceEntropy": "ngl_dc_entr",
}
_NGTDM = {
    "Coarseness": "ngt_coarseness",
    "Contrast": "ngt_contrast",
    "Busyness": "ngt_busyness",
    "Complexity": "ngt_complexity",
    "Strength": "ngt_strength",
}
PHANTOM_TAGS: dict[tuple[str, str], str] = {
    **{("shape", k): v for k, v in _SHAPE.items()},
    **{("firstorder", k): v for k, v in _FIRSTORDER.items()},
    **{("glcm", k): f"{v}_3D_avg" for k, v in _GLCM.items()},
    **{("glrlm", k): f"{v}_3D_avg" for k, v in _GLRLM.items()},
    **{("glszm", k): f"{v}_3D" for k, v in _GLSZM.items()},
    **{("gldm", k): f"{v}_3D" for k, v in _GLDM.items()},
    **{("ngtdm", k): f"{v}_3D" for k, v in _NGTDM.items()},
}

# Why PyRadiomics differs from the IBSI definition, where it does (see PyRadiomics' FAQ).
KNOWN_DEVIATIONS: dict[tuple[str, str], str] = {
    ("firstorder", "Kurtosis"): (
        "PyRadiomics reports the kurtosis m4/m2^2, IBSI the excess kurtosis m4/m2^2 - 3: "
        "the values differ by exactly 3."
    ),
    ("shape", "MajorAxisLength"): (
        "PyRadiomics takes the eigenvalues of the population covariance of the voxel "
        "centres (divided by N); the IBSI consensus values match the sample covariance "
        "(N - 1): lengths differ by sqrt(N / (N - 1)), 0.68 % for the phantom's 74 voxels."
    ),
    ("shape", "MinorAxisLength"): "As MajorAxisLength: population vs sample covariance.",
    ("shape", "LeastAxisLength"): "As MajorAxisLength: population vs sample covariance.",
    ("shape", "Elongation"): "Ratio of axis lengths: the covariance normalisation cancels.",
    ("shape", "Flatness"): "Ratio of axis lengths: the covariance normalisation cancels.",
    ("glcm", "SumVariance"): "Deprecated in PyRadiomics (equal to ClusterTendency): no value.",
    ("glcm", "Dissimilarity"): "Deprecated in PyRadiomics (equal to DifferenceAverage): no value.",
    ("gldm", "DependencePercentage"): "Deprecated in PyRadiomics (always 1): no value.",
    ("gldm", "GrayLevelNonUniformityNormalized"): (
        "Deprecated in PyRadiomics (equal to first order Uniformity): no value."
    ),
}


@dataclass(frozen=True)
class ConformanceRow:
    """One feature compared with its IBSI reference.

    Attributes:
        feature_class: PyRadiomics class.
        feature: PyRadiomics feature name.
        ibsi_code: IBSI code radserve writes for it (None: coded ``99RADSERVE``).
        tag: IBSI reference tag.
        reference: IBSI consensus value (None: IBSI gives none for the phantom).
        tolerance: IBSI tolerance.
        value: radserve's value (None: PyRadiomics gives none).
        note: Explanation of a known deviation.
    """

    feature_class: str
    feature: str
    ibsi_code: str | None
    tag: str
    reference: float | None
    tolerance: float | None
    value: float | None
    note: str = ""

    @property
    def allowed(self) -> float | None:
        """The tolerance plus half a unit of the reference's third significant digit (IBSI
        reports its consensus values rounded to three significant digits)."""
        if self.reference is None or self.tolerance is None:
            return None
        if self.reference == 0:
            return self.tolerance
        exponent = math.floor(math.log10(abs(self.reference))) - (SIGNIFICANT_DIGITS - 1)
        return self.tolerance + 0.5 * 10.0**exponent

    @property
    def status(self) -> str:
        """``pass``, ``fail``, ``no value`` or ``no reference``."""
        allowed = self.allowed
        if self.reference is None or allowed is None:
            return "no reference"
        if self.value is None:
            return "no value"
        # A hair of slack for the binary representation of the decimal bound.
        return "pass" if abs(self.value - self.reference) <= allowed * (1 + 1e-9) else "fail"


def phantom_parameter_set() -> ParameterSet:
    """The IBSI phantom configuration: original image, bin width 1, no intensity shift,
    every PyRadiomics feature (deprecated ones included)."""
    classes = {
        name: sorted(feature_class.getFeatureNames())
        for name, feature_class in pyradiomics_compat.feature_classes().items()
        if name != "shape2D"
    }
    return ParameterSet.from_dict(
        "ibsi_phantom",
        {
            "imageType": {"Original": {}},
            "featureClass": classes,
            "setting": {
                "binWidth": 1,
                "voxelArrayShift": 0,
                "label": 1,
                "minimumROIDimensions": 1,
            },
        },
    )


def read_references(path: str | Path) -> dict[str, tuple[float | None, float | None]]:
    """IBSI reference values by tag: ``(value, tolerance)``, None where IBSI gives none."""
    references: dict[str, tuple[float | None, float | None]] = {}
    with Path(path).open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter=";")
        next(reader)  # header
        for row in reader:
            if len(row) < 3:
                continue
            value, tolerance, tag = (cell.strip() for cell in row[:3])
            references[tag] = (
                float(value) if value else None,
                float(tolerance) if tolerance else None,
            )
    return references


def run_phantom(phantom_dir: str | Path) -> list[ConformanceRow]:
    """Extract the phantom's features and compare them with IBSI's reference values."""
    phantom_dir = Path(phantom_dir)
    image, labelmap = read_case(phantom_dir / PHANTOM_IMAGE, phantom_dir / PHANTOM_MASK)
    (segment,) = extract_features(image, labelmap, parameter_set=phantom_parameter_set())
    values = segment.values()
    references = read_references(phantom_dir / REFERENCE_FILE)
    rows: list[ConformanceRow] = []
    for (feature_class, feature), tag in PHANTOM_TAGS.items():
        concept = ibsi_concept(feature_class, feature)
        reference, tolerance = references.get(tag, (None, None))
        value = values.get(f"original_{feature_class}_{feature}")
        rows.append(
            ConformanceRow(
                feature_class=feature_class,
                feature=feature,
                ibsi_code=concept.code if concept is not None else None,
                tag=tag,
                reference=reference,
                tolerance=tolerance,
                value=value if value is None or math.isfinite(value) else None,
                note=KNOWN_DEVIATIONS.get((feature_class, feature), ""),
            )
        )
    return rows


def render_markdown(rows: list[ConformanceRow]) -> str:
    """The conformance report as Markdown."""
    counts = {s: sum(r.status == s for r in rows) for s in ("pass", "fail", "no value")}
    coded = [r for r in rows if r.ibsi_code is not None and r.value is not None]
    coded_pass = sum(r.status == "pass" for r in coded)
    lines = [
        "# IBSI conformance (chapter 1 digital phantom)",
        "",
        "Generated by `bench/ibsi_conformance.py` (`radserve.radiomics.ibsi`); do not edit.",
        "",
        "radserve extracts every PyRadiomics feature from the IBSI digital phantom",
        "(`../shared/data/ibsi1_digital_phantom`, NIfTI) with the phantom configuration:",
        "original image, no resampling, the phantom's own grey levels (fixed bin width 1),",
        "no intensity shift (`voxelArrayShift: 0`). PyRadiomics averages GLCM and GLRLM",
        "features over the 13 directions of 3D matrices (IBSI `3D_avg`); GLSZM, GLDM (IBSI",
        "NGLDM with alpha 0, distance 1) and NGTDM are 3D (IBSI `3D`). IBSI gives its",
        "consensus values rounded to three significant digits, so a feature passes when",
        "|value - reference| <= tolerance + half a unit of the reference's third significant",
        "digit (the `allowed` column).",
        "",
        f"Summary: {len(rows)} PyRadiomics features with an IBSI counterpart; "
        f"{counts['pass']} pass, {counts['fail']} fail, {counts['no value']} without a value "
        f"(deprecated in PyRadiomics). Of the {len(coded)} features radserve writes with an "
        f"IBSI code, {coded_pass} pass; features with a known deviation from the IBSI "
        "definition are written with a `99RADSERVE` code instead. "
        "`tests/radiomics/test_ibsi.py` locks in every pass.",
        "",
        "The IBSI code column is what radserve writes into the SR; features without one are",
        "coded in the private scheme `99RADSERVE` (see `radserve/radiomics/codes.py`).",
        "",
        "| class | PyRadiomics feature | IBSI code | IBSI tag | reference | tolerance "
        "| allowed | radserve | result | note |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [_table_row(row) for row in rows]
    lines += [
        "",
        "## Coding: corrections to PyRadiomics' mapping file",
        "",
        "radserve reads PyRadiomics' `featuresDict_IBSIv7.tsv` and corrects it as follows",
        "(`radserve.radiomics.codes.CORRECTIONS` and `ADDITIONS`):",
        "",
        *[
            f"- row `{c} {f}`: "
            + ("dropped" if target is None else f"read as `{target[0]} {target[1]}`")
            for (c, f), target in CORRECTIONS.items()
        ],
        *[
            f"- added `{c} {f}` = IBSI `{concept.code}` ({concept.meaning})"
            for (c, f), concept in ADDITIONS.items()
        ],
        "",
        "Features without an IBSI code (no IBSI twin, a known deviation, or computed on a",
        "filtered image) are coded in the private scheme `99RADSERVE`: code value `R` + the",
        "first 12 hexadecimal digits (upper case) of the SHA-256 of the PyRadiomics feature",
        "name, code meaning the feature name.",
        "",
        "## Known PyRadiomics deviations",
        "",
        *[
            f"- **{feature_class} {feature}**: {note}"
            for (feature_class, feature), note in KNOWN_DEVIATIONS.items()
        ],
        "",
    ]
    return "\n".join(lines)


def _table_row(row: ConformanceRow) -> str:
    cells = [
        row.feature_class,
        row.feature,
        row.ibsi_code or "-",
        f"`{row.tag}`",
        _number(row.reference),
        _number(row.tolerance),
        _number(row.allowed),
        _number(row.value),
        row.status,
        row.note,
    ]
    return "| " + " | ".join(cells) + " |"


def write_conformance(phantom_dir: str | Path, out: str | Path) -> list[ConformanceRow]:
    """Run the phantom and write the Markdown report to ``out``."""
    rows = run_phantom(phantom_dir)
    Path(out).write_text(render_markdown(rows), encoding="utf-8")
    return rows


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"
