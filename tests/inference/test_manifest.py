"""manifest.yaml: validation with clear messages, safe YAML only, round trip."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from radserve.inference import (
    InvalidModelPackageError,
    Manifest,
    ScaleToUnit,
    ZScore,
    load_manifest,
    manifest_to_yaml,
    parse_manifest,
)
from tests.onnx_models import manifest_dict

MODEL = b"not a model: the manifest tests never load it"


def _parse(manifest: dict[str, Any]) -> Manifest:
    return parse_manifest(yaml.safe_dump(manifest, sort_keys=False))


def _error(manifest: dict[str, Any]) -> str:
    with pytest.raises(InvalidModelPackageError) as info:
        _parse(manifest)
    return str(info.value)


def test_valid_manifest_values() -> None:
    manifest = _parse(manifest_dict(MODEL))
    assert manifest.name == "test-model"
    assert manifest.version == "1.0.0"
    assert manifest.preprocessing.orientation == "RAS"
    assert manifest.preprocessing.target_spacing_mm == (1.0, 1.0, 1.0)
    assert manifest.preprocessing.intensity.window_hu == (-1000.0, 1000.0)
    assert isinstance(manifest.preprocessing.intensity.normalisation, ScaleToUnit)
    assert manifest.inference.patch_size == (16, 16, 8)
    assert manifest.inference.min_component_voxels is None
    assert manifest.output_channels == 2
    assert manifest.labels[0].type.meaning == "Bone"
    assert manifest.provenance.created == datetime(2025, 1, 31, 12, tzinfo=UTC)
    assert manifest.radiomics_parameter_set == "small.yaml"


def test_zscore_normalisation_and_case_folding() -> None:
    data = manifest_dict(MODEL, model_sha256="AB" * 32)
    data["preprocessing"]["orientation"] = "lps"
    data["preprocessing"]["intensity"]["normalisation"] = {
        "method": "zscore",
        "mean": 40,
        "std": 16,
    }
    data["input"]["modalities"] = ["ct", "MR"]
    manifest = _parse(data)
    norm = manifest.preprocessing.intensity.normalisation
    assert isinstance(norm, ZScore) and (norm.mean, norm.std) == (40.0, 16.0)
    assert manifest.model_sha256 == "ab" * 32
    assert manifest.preprocessing.orientation == "LPS"
    assert manifest.input.modalities == ("CT", "MR")


def test_manifest_is_frozen() -> None:
    manifest = _parse(manifest_dict(MODEL))
    with pytest.raises(ValueError, match="frozen"):
        manifest.name = "other"


def test_yaml_round_trip(tmp_path: Path) -> None:
    data = manifest_dict(MODEL, inference={"min_component_voxels": 20})
    manifest = _parse(data)
    path = tmp_path / "manifest.yaml"
    path.write_text(manifest_to_yaml(manifest), encoding="utf-8")
    assert load_manifest(path) == manifest


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"extra_key": 1}, "unknown key 'extra_key'"),
        ({"inference": {"patchsize": [1, 1, 1]}}, "unknown key 'inference.patchsize'"),
        ({"version": "1.0"}, "version: String should match pattern"),
        ({"version": 1.0}, "version: Input should be a valid string"),
        ({"name": "../evil"}, "name: String should match pattern"),
        ({"model_sha256": "abc"}, "model_sha256: String should match pattern"),
        (
            {"inference": {"patch_size": [16, 0, 8]}},
            "inference.patch_size.1: Input should be greater than 0",
        ),
        ({"inference": {"patch_size": [16, 16]}}, "inference.patch_size"),
        ({"inference": {"overlap": 1.0}}, "inference.overlap: Input should be less than 1"),
        (
            {"inference": {"overlap": -0.1}},
            "inference.overlap: Input should be greater than or equal to 0",
        ),
        ({"inference": {"batch_size": 0}}, "inference.batch_size: Input should be greater than 0"),
        (
            {"inference": {"blending": "linear"}},
            "inference.blending: Input should be 'gaussian' or 'constant'",
        ),
        ({"inference": {"min_component_voxels": 0}}, "inference.min_component_voxels"),
        ({"radiomics_parameter_set": ""}, "radiomics_parameter_set"),
    ],
)
def test_invalid_values_are_named(change: dict[str, Any], message: str) -> None:
    assert message in _error(manifest_dict(MODEL, **change))


@pytest.mark.parametrize("field", ["name", "model_sha256", "preprocessing", "labels", "provenance"])
def test_missing_field_is_named(field: str) -> None:
    data = manifest_dict(MODEL)
    del data[field]
    assert f"missing field '{field}'" in _error(data)


def test_nested_missing_field_is_named() -> None:
    data = manifest_dict(MODEL)
    del data["preprocessing"]["target_spacing_mm"]
    assert "missing field 'preprocessing.target_spacing_mm'" in _error(data)


@pytest.mark.parametrize("code", ["RAX", "RRS", "RA", "RASL", "LPI S"])
def test_orientation_must_be_an_axis_code(code: str) -> None:
    data = manifest_dict(MODEL)
    data["preprocessing"]["orientation"] = code
    assert "orientation must be three letters" in _error(data)


def test_spacing_and_window_checks() -> None:
    data = manifest_dict(MODEL)
    data["preprocessing"]["target_spacing_mm"] = [1.0, -1.0, 1.0]
    assert "target_spacing_mm.1: Input should be greater than 0" in _error(data)
    data = manifest_dict(MODEL)
    data["preprocessing"]["intensity"]["window_hu"] = [300, -200]
    assert "window low must be below window high, got [300.0, -200.0]" in _error(data)
    data = manifest_dict(MODEL)
    data["preprocessing"]["intensity"]["normalisation"] = {"method": "zscore", "mean": 0, "std": 0}
    assert "normalisation.zscore.std: Input should be greater than 0" in _error(data)
    data["preprocessing"]["intensity"]["normalisation"] = {"method": "minmax"}
    assert "does not match any of the expected tags" in _error(data)


def test_labels_must_be_one_to_n_and_unique() -> None:
    base = manifest_dict(MODEL)["labels"][0]
    two = {**base, "label": 2, "name": "Other"}
    assert "labels must be 1, 2, ..., n in order (label = output channel), got [2]" in _error(
        manifest_dict(MODEL, labels=[two])
    )
    assert "got [1, 1]" in _error(manifest_dict(MODEL, labels=[base, {**base, "name": "X"}]))
    assert "got [2, 1]" in _error(manifest_dict(MODEL, labels=[two, base]))
    assert "label names must be unique, repeated: ['Bone']" in _error(
        manifest_dict(MODEL, labels=[base, {**base, "label": 2}])
    )
    assert "labels: Tuple should have at least 1 item" in _error(manifest_dict(MODEL, labels=[]))
    assert "labels.0.label: Input should be greater than or equal to 1" in _error(
        manifest_dict(MODEL, labels=[{**base, "label": 0}])
    )
    long_meaning = {**base, "type": {**base["type"], "meaning": "x" * 65}}
    assert "labels.0.type.meaning" in _error(manifest_dict(MODEL, labels=[long_meaning]))


def test_label_names_and_codes_are_single_dicom_values() -> None:
    """Found by the conformance gate: a label name holding a newline made an invalid LO in
    the SEG, and one holding a backslash (DICOM's value separator) made the SR writer fail
    to find its segment; both are written verbatim into the results."""
    base = manifest_dict(MODEL)["labels"][0]
    for odd in ("Bone\\Marrow", "Bone\nMarrow", "Bone\x00"):
        message = _error(manifest_dict(MODEL, labels=[{**base, "name": odd}]))
        assert "labels.0.name: String should match pattern" in message
    code = {**base, "category": {**base["category"], "value": "T-D0050\\1"}}
    assert "labels.0.category.value" in _error(manifest_dict(MODEL, labels=[code]))
    assert _parse(manifest_dict(MODEL, labels=[{**base, "name": "Os – ß (Knochen)"}]))


def test_created_needs_a_time_zone_and_metrics_are_numbers() -> None:
    data = manifest_dict(MODEL)
    data["provenance"]["created"] = "2025-01-31T12:00:00"
    assert "provenance.created: Input should have timezone info" in _error(data)
    data = manifest_dict(MODEL)
    data["provenance"]["validation_metrics"] = {"dice": "good"}
    assert "provenance.validation_metrics.dice" in _error(data)


def test_bad_regex_is_refused() -> None:
    data = manifest_dict(MODEL, input={"series_description_regex": "(unclosed"})
    assert "input.series_description_regex: not a valid regular expression" in _error(data)


def test_malformed_yaml() -> None:
    with pytest.raises(InvalidModelPackageError, match=r"manifest\.yaml is not valid YAML"):
        parse_manifest("name: [unclosed\nversion: 1.0.0\n")


def test_not_a_mapping() -> None:
    with pytest.raises(InvalidModelPackageError, match="must be a YAML mapping, got list"):
        parse_manifest("- a\n- b\n")


def test_duplicate_key_is_refused() -> None:
    text = yaml.safe_dump(manifest_dict(MODEL), sort_keys=False) + "name: other-model\n"
    with pytest.raises(InvalidModelPackageError, match=r"duplicate key\(s\) \['name'\]"):
        parse_manifest(text)


def test_hostile_yaml_tags_are_not_constructed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    for hostile in (
        f"name: !!python/object/apply:os.system ['touch {marker}']\n",
        "name: !!python/object:builtins.object {}\n",
        "name: !!python/name:os.system\n",
    ):
        with pytest.raises(InvalidModelPackageError, match="could not determine a constructor"):
            parse_manifest(hostile)
    assert not marker.exists()


def test_load_manifest_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidModelPackageError, match=r"cannot read manifest\.yaml"):
        load_manifest(tmp_path / "manifest.yaml")
    path = tmp_path / "manifest.yaml"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(InvalidModelPackageError, match=r"cannot read manifest\.yaml"):
        load_manifest(path)


def test_input_selection_mismatch() -> None:
    data = manifest_dict(
        MODEL,
        input={
            "modalities": ["CT"],
            "body_parts": ["chest", "ABDOMEN"],
            "series_description_regex": "(?i)venous",
            "min_slices": 10,
        },
    )
    selection = _parse(data).input

    def mismatch(**changes: Any) -> str | None:
        series: dict[str, Any] = {
            "modality": "CT",
            "body_part_examined": "CHEST",
            "series_description": "Abdomen Venous 1.0",
            "number_of_slices": 10,
        }
        return selection.mismatch(**{**series, **changes})

    assert mismatch() is None
    assert mismatch(modality="MR") == "modality 'MR' is not one of ['CT']"
    assert mismatch(modality=None) == "modality None is not one of ['CT']"
    assert (
        mismatch(body_part_examined="HEAD") == "body part 'HEAD' is not one of ['CHEST', 'ABDOMEN']"
    )
    assert mismatch(series_description="arterial") == (
        "series description does not match the model's selection pattern"
    )
    assert mismatch(number_of_slices=9) == "9 slices, the model needs at least 10"
