"""Parameter sets: lookup by name or path, PyRadiomics schema validation, identity hash."""

from __future__ import annotations

from pathlib import Path

import pytest

from radserve.radiomics import (
    PARAMETER_SET_DIR,
    ParameterSet,
    ParameterSetError,
    list_parameter_sets,
    load_parameter_set,
)


def test_shipped_sets_load_with_their_image_types() -> None:
    assert {"default", "ibsi_ct"} <= set(list_parameter_sets())
    default = load_parameter_set("default")
    assert default.name == "default"
    assert default.image_types() == {
        "Original": {},
        "LoG": {"sigma": [1.0, 3.0, 5.0]},
        "Wavelet": {},
    }
    assert default.settings()["binWidth"] == 25
    assert default.settings()["resampledPixelSpacing"] is None  # PyRadiomics' default kept
    assert set(default.feature_classes()) == {
        "shape",
        "firstorder",
        "glcm",
        "glrlm",
        "glszm",
        "gldm",
        "ngtdm",
    }
    ibsi = load_parameter_set(PARAMETER_SET_DIR / "ibsi_ct.yaml")
    assert ibsi.image_types() == {"Original": {}}
    assert ibsi.settings()["resampledPixelSpacing"] == [2.0, 2.0, 2.0]
    assert ibsi.settings()["resegmentRange"] == [-1000.0, 400.0]


def test_hash_follows_settings_not_comments(tmp_path: Path) -> None:
    text = (PARAMETER_SET_DIR / "default.yaml").read_text()
    (tmp_path / "commented.yaml").write_text("# another comment\n" + text)
    (tmp_path / "changed.yaml").write_text(text.replace("binWidth: 25", "binWidth: 10"))
    default = load_parameter_set("default")
    commented = load_parameter_set(tmp_path / "commented.yaml")
    changed = load_parameter_set(tmp_path / "changed.yaml")
    assert commented.sha256 == default.sha256
    assert changed.sha256 != default.sha256
    assert len(default.sha256) == 64
    assert default.identifier == f"default sha256:{default.sha256[:16]}"


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"setting": {"binWidth": -1}}, "binWidth"),
        ({"setting": {"binwidth": 25}}, "binwidth"),
        ({"imageType": {"Blur": {}}}, "Image Type Blur is not recognized"),
        ({"featureClass": {"glcm": ["NoSuchFeature"]}}, "NoSuchFeature"),
        ({"settings": {}}, "unknown sections"),
    ],
)
def test_invalid_parameters_are_refused(parameters: dict[str, object], message: str) -> None:
    with pytest.raises(ParameterSetError, match=message):
        ParameterSet.from_dict("bad", parameters)


def test_unknown_name_and_bad_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ParameterSetError, match=r"unknown parameter set 'nope'.*default"):
        load_parameter_set("nope")
    with pytest.raises(ParameterSetError, match="not found"):
        load_parameter_set(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ParameterSetError, match="must be a mapping"):
        load_parameter_set(tmp_path / "list.yaml")
    (tmp_path / "broken.yaml").write_text("setting: {binWidth: [\n")
    with pytest.raises(ParameterSetError, match="cannot read"):
        load_parameter_set(tmp_path / "broken.yaml")
