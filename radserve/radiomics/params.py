"""Radiomics parameter sets: PyRadiomics' own parameter-file YAML, named and hashed.

A parameter set is a PyRadiomics parameter file (``imageType``, ``featureClass``,
``setting``), validated against PyRadiomics' schema when loaded. Sets are found by name in
``configs/radiomics/`` (``default`` is ``configs/radiomics/default.yaml``) or given as a
path. Each set is identified by its name and the SHA-256 of its parameters as canonical JSON,
so comments and formatting do not change the hash but any setting does.

radserve follows every setting of the file except ``additionalInfo``: PyRadiomics'
diagnostics are computed only when the caller asks for them (``diagnostics=True``), as they
cost whole-image work and carry no feature.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

import radserve.radiomics.pyradiomics_compat as pyradiomics_compat
from radserve.radiomics.errors import ParameterSetError

logger = logging.getLogger(__name__)

# configs/ sits next to the radserve package in the repository (and in the container image).
PARAMETER_SET_DIR = Path(__file__).resolve().parents[2] / "configs" / "radiomics"
DEFAULT_PARAMETER_SET = "default"
_TOP_LEVEL_KEYS = frozenset({"imageType", "featureClass", "setting", "voxelSetting"})


@dataclass(frozen=True)
class ParameterSet:
    """A validated PyRadiomics parameter set.

    Attributes:
        name: The set's name (the file stem, e.g. ``default``).
        sha256: SHA-256 (hex) of the parameters as canonical JSON.
        parameters_json: The parameters as JSON, in file order (the order of image types and
            feature classes is the order of the output).
    """

    name: str
    sha256: str
    parameters_json: str

    @classmethod
    def from_dict(cls, name: str, parameters: dict[str, Any]) -> ParameterSet:
        """Validate ``parameters`` (a PyRadiomics parameter dictionary) and name it.

        Raises:
            ParameterSetError: The dictionary is not a valid PyRadiomics parameter file.
        """
        _validate(name, parameters)
        canonical = json.dumps(parameters, sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
        return cls(name=name, sha256=digest, parameters_json=json.dumps(parameters))

    @property
    def identifier(self) -> str:
        """Name and short hash, as written into results: ``default sha256:0123abcd4567ef89``."""
        return f"{self.name} sha256:{self.sha256[:16]}"

    def parameters(self) -> dict[str, Any]:
        """A fresh copy of the parameter dictionary."""
        result: dict[str, Any] = json.loads(self.parameters_json)
        return result

    def settings(self) -> dict[str, Any]:
        """The ``setting`` section over PyRadiomics' defaults, as the extractor applies them."""
        parameters = self.parameters()
        settings = pyradiomics_compat.default_settings()
        settings.update(parameters.get("setting") or {})
        settings.update(parameters.get("voxelSetting") or {})
        return settings

    def image_types(self) -> dict[str, dict[str, Any]]:
        """Enabled image types and their custom settings (``Original`` when none is given)."""
        types = self.parameters().get("imageType") or {}
        if not types:
            return {"Original": {}}
        return {name: dict(custom or {}) for name, custom in types.items()}

    def feature_classes(self) -> dict[str, list[str] | None]:
        """Enabled feature classes with their feature names (None or [] for all)."""
        classes = self.parameters().get("featureClass") or {}
        if not classes:
            return {name: [] for name in pyradiomics_compat.feature_classes()}
        return {
            name: (list(names) if names is not None else None) for name, names in classes.items()
        }


def load_parameter_set(
    name_or_path: str | Path, *, search_dirs: Sequence[Path] | None = None
) -> ParameterSet:
    """Load a parameter set by name (``default``, ``ibsi_ct``) or from a YAML file path.

    Args:
        name_or_path: A set name, looked up as ``<name>.yaml`` in ``search_dirs``, or a path.
        search_dirs: Folders searched for names; by default ``configs/radiomics/``.

    Raises:
        ParameterSetError: Unknown name, unreadable YAML, or parameters PyRadiomics rejects.
    """
    path = _resolve(name_or_path, search_dirs or [PARAMETER_SET_DIR])
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ParameterSetError(f"parameter set {path.name}: cannot read: {exc}") from exc
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ParameterSetError(f"parameter set {path.name}: the YAML must be a mapping")
    return ParameterSet.from_dict(path.stem, document)


def list_parameter_sets(*, search_dirs: Sequence[Path] | None = None) -> list[str]:
    """Names of the parameter sets found in ``search_dirs`` (``configs/radiomics/``)."""
    names: set[str] = set()
    for folder in search_dirs or [PARAMETER_SET_DIR]:
        names.update(p.stem for p in folder.glob("*.yaml"))
    return sorted(names)


def _resolve(name_or_path: str | Path, search_dirs: Sequence[Path]) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix in (".yaml", ".yml") or len(candidate.parts) > 1:
        if not candidate.is_file():
            raise ParameterSetError(f"parameter file not found: {candidate}")
        return candidate
    for folder in search_dirs:
        for suffix in (".yaml", ".yml"):
            path = folder / f"{name_or_path}{suffix}"
            if path.is_file():
                return path
    known = list_parameter_sets(search_dirs=search_dirs)
    raise ParameterSetError(f"unknown parameter set {str(name_or_path)!r}; known: {known}")


def _validate(name: str, parameters: dict[str, Any]) -> None:
    unknown = sorted(set(parameters) - _TOP_LEVEL_KEYS)
    if unknown:
        raise ParameterSetError(f"parameter set {name}: unknown sections {unknown}")
    try:
        json.dumps(parameters)
    except (TypeError, ValueError) as exc:
        raise ParameterSetError(f"parameter set {name}: not plain data: {exc}") from exc
    import pykwalify.core  # type: ignore[import-untyped]

    schema_file, schema_funcs = pyradiomics_compat.parameter_schema()
    pykwalify_log = logging.getLogger("pykwalify")
    level = pykwalify_log.level
    pykwalify_log.setLevel(logging.CRITICAL)  # it logs each error before raising them all
    try:
        with warnings.catch_warnings():
            # pykwalify loads PyRadiomics' schema functions with the deprecated load_module().
            warnings.simplefilter("ignore", DeprecationWarning)
            core = pykwalify.core.Core(
                source_data=copy.deepcopy(parameters),
                schema_files=[schema_file],
                extensions=[schema_funcs],
            )
            core.validate(raise_exception=True)
    except Exception as exc:  # pykwalify raises SchemaError, CoreError or ValueError
        message = str(getattr(exc, "msg", exc)).strip()
        raise ParameterSetError(f"parameter set {name}: {message}") from exc
    finally:
        pykwalify_log.setLevel(level)
