"""Feature codes and units: the corrected IBSI mapping, private codes, UCUM units."""

from __future__ import annotations

import hashlib
from collections import Counter

from radiomics import getFeatureClasses

from radserve.dicom_io import Code
from radserve.radiomics import (
    PRIVATE_SCHEME,
    FeatureName,
    feature_code,
    feature_unit,
    ibsi_concept,
    ibsi_mapping,
    private_code,
)


def test_mapping_names_real_features_with_unique_codes() -> None:
    mapping = ibsi_mapping()
    known = {(c, f) for c, cls in getFeatureClasses().items() for f in cls.getFeatureNames()}
    assert set(mapping) <= known  # every row names a PyRadiomics 3.0.1 feature
    assert [c for c, n in Counter(v.code for v in mapping.values()).items() if n > 1] == []
    assert len(mapping) == 105


def test_known_errors_of_the_mapping_file_are_corrected() -> None:
    assert ibsi_concept("glszm", "SmallAreaLowGrayLevelEmphasis").code == "5RAI"  # type: ignore[union-attr]
    assert ibsi_concept("glcm", "SmallAreaLowGrayLevelEmphasis") is None
    assert ibsi_concept("glszm", "LowGrayLevelZoneEmphasis").code == "XMSY"  # type: ignore[union-attr]
    assert ibsi_concept("glszm", "ZoneEntropy").code == "GU8N"  # type: ignore[union-attr]
    assert ibsi_concept("glcm", "Imc2").code == "JN9H"  # type: ignore[union-attr]
    # Not IBSI's definitions: coded privately.
    assert ibsi_concept("firstorder", "Kurtosis") is None
    assert ibsi_concept("shape", "MinorAxisLength") is None


def test_original_features_get_ibsi_codes_filtered_ones_private_codes() -> None:
    assert feature_code("original_glcm_Contrast") == Code("ACUI", "IBSI", "(GLCM) Contrast")
    assert feature_code("original_shape_Sphericity") == Code("QCFX", "IBSI", "Sphericity")
    wavelet = feature_code("wavelet-LLH_glcm_Contrast")
    digest = hashlib.sha256(b"wavelet-LLH_glcm_Contrast").hexdigest()[:12].upper()
    assert wavelet == Code(f"R{digest}", PRIVATE_SCHEME, "wavelet-LLH_glcm_Contrast")
    assert len(wavelet.value) <= 16  # a Code Value (SH)
    long_name = "log-sigma-10-0-mm-3D_gldm_SmallDependenceHighGrayLevelEmphasis"
    assert private_code(long_name).meaning == long_name[:64]
    assert FeatureName.parse("log-sigma-1-0-mm-3D_glcm_Idmn").image_type == "log-sigma-1-0-mm-3D"


def test_units() -> None:
    def unit(name: str, modality: str | None = "CT") -> str:
        return feature_unit(name, modality=modality).value

    assert unit("original_shape_MeshVolume") == "mm3"
    assert unit("original_shape_SurfaceArea") == "mm2"
    assert unit("original_shape_SurfaceVolumeRatio") == "/mm"
    assert unit("original_shape_Maximum3DDiameter") == "mm"
    assert unit("original_shape_Sphericity") == "1"
    assert unit("original_firstorder_Mean") == "[hnsf'U]"
    assert unit("original_firstorder_Variance") == "[hnsf'U]2"
    assert unit("original_firstorder_TotalEnergy") == "[hnsf'U]2.mm3"
    assert unit("original_firstorder_Entropy") == "1"
    assert unit("original_firstorder_Mean", "MR") == "[arb'U]"
    assert unit("log-sigma-1-0-mm-3D_firstorder_Mean") == "[arb'U]"
    assert unit("original_glcm_Contrast") == "1"
    assert all(
        feature_unit(n, modality="CT").scheme == "UCUM"
        for n in ("original_shape_MeshVolume", "original_glrlm_RunEntropy")
    )
