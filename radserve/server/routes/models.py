"""``GET /models`` (role ``read``): the loaded model packages, the execution provider each
session actually uses, and the radiomics parameter set each computes (name and sha256;
``null`` when the model computes no features or radiomics is switched off)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from radserve.server.deps import JobsDep, require_role
from radserve.server.registry import RegisteredModel
from radserve.server.routes.api_description import AUTHENTICATED
from radserve.server.routes.schemas import ModelList
from radserve.server.settings import Role

router = APIRouter(
    tags=["models"], dependencies=[Depends(require_role(Role.READ))], responses=AUTHENTICATED
)


def model_json(model: RegisteredModel) -> dict[str, Any]:
    """The JSON view of a loaded model."""
    manifest = model.package.manifest
    selection = manifest.input
    radiomics = None
    if model.radiomics is not None:
        parameter_set = model.radiomics.parameter_set
        radiomics = {
            "parameter_set": parameter_set.name,
            "sha256": parameter_set.sha256,
            "identifier": parameter_set.identifier,
        }
    return {
        "name": manifest.name,
        "version": manifest.version,
        "model_sha256": manifest.model_sha256,
        "provider": model.predictor.provider,
        "input": {
            "modalities": list(selection.modalities),
            "body_parts": list(selection.body_parts),
            "series_description_regex": selection.series_description_regex,
            "min_slices": selection.min_slices,
        },
        "labels": [{"label": spec.label, "name": spec.name} for spec in manifest.labels],
        "intended_use": manifest.provenance.intended_use,
        "validation_metrics": dict(manifest.provenance.validation_metrics),
        "radiomics": radiomics,
    }


@router.get("/models", summary="Loaded models", response_model=ModelList)
def list_models(jobs: JobsDep) -> dict[str, list[dict[str, Any]]]:
    """Every loaded model package, by name then version."""
    return {"models": [model_json(m) for m in jobs.registry.models]}
