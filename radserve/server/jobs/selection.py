"""Which series a model runs on: the facts of a series, and whether a model accepts it.

The one place where a series meets a model's selection rules (``input`` in the manifest:
modality, body part, series description pattern, minimum slices): routing checks a stored
series (:func:`series_facts`, from the store's index), the worker chooses among a study's
series or a pulled series (:func:`choose_series`, :func:`facts_of_datasets`), and the
pipeline checks the series it was given (:func:`check_selection`). A series holding
radserve's own results is never accepted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset

from radserve.dicom_io import MANUFACTURER, ImageSeries
from radserve.inference import InputSelection, ModelPackage, SeriesNotAcceptedError
from radserve.server.registry import RegisteredModel
from radserve.server.store import InstanceQuery, InstanceStore, QueryLevel

# DICOM JSON tags of the series attributes the selection rules use.
_MODALITY = "00080060"
_BODY_PART_EXAMINED = "00180015"
_SERIES_DESCRIPTION = "0008103E"
_MANUFACTURER = "00080070"
_NUMBER_OF_SERIES_RELATED_INSTANCES = "00201209"
_NUMBER_OF_FRAMES = "00280008"


@dataclass(frozen=True)
class SeriesFacts:
    """What the selection rules look at, from the store's index."""

    study_instance_uid: str
    series_instance_uid: str
    modality: str | None
    body_part_examined: str | None
    series_description: str | None
    manufacturer: str | None
    number_of_slices: int


def _first(attributes: dict[str, Any], tag: str) -> Any:
    values = attributes.get(tag, {}).get("Value") or [None]
    return values[0]


def series_facts(store: InstanceStore, study_instance_uid: str) -> list[SeriesFacts]:
    """The facts of every series of a study in the store (none if it holds no such study)."""
    found = store.search(
        InstanceQuery(level=QueryLevel.SERIES, study_instance_uid=study_instance_uid)
    )
    facts: list[SeriesFacts] = []
    for attributes in found:
        series = str(_first(attributes, "0020000E"))
        count = int(_first(attributes, _NUMBER_OF_SERIES_RELATED_INSTANCES) or 0)
        if count == 1:  # perhaps one multi-frame instance: its frames are the slices
            (instance,) = store.search(
                InstanceQuery(
                    level=QueryLevel.IMAGE,
                    study_instance_uid=study_instance_uid,
                    series_instance_uid=series,
                )
            )
            count = max(1, int(_first(instance, _NUMBER_OF_FRAMES) or 1))
        facts.append(
            SeriesFacts(
                study_instance_uid=study_instance_uid,
                series_instance_uid=series,
                modality=_first(attributes, _MODALITY),
                body_part_examined=_first(attributes, _BODY_PART_EXAMINED),
                series_description=_first(attributes, _SERIES_DESCRIPTION),
                manufacturer=_first(attributes, _MANUFACTURER),
                number_of_slices=count,
            )
        )
    return facts


def mismatch(selection: InputSelection, facts: SeriesFacts) -> str | None:
    """Why ``selection`` does not accept the series, or ``None`` when it does."""
    if facts.manufacturer == MANUFACTURER:
        return "the series holds radserve's own results"
    return selection.mismatch(
        modality=facts.modality,
        body_part_examined=facts.body_part_examined,
        series_description=facts.series_description,
        number_of_slices=facts.number_of_slices,
    )


def choose_series(facts: Sequence[SeriesFacts], model: RegisteredModel) -> str:
    """The accepted series with the most slices.

    Raises:
        SeriesNotAcceptedError: The model accepts none of them (naming why).
    """
    selection = model.package.manifest.input
    accepted = [f for f in facts if mismatch(selection, f) is None]
    if not accepted:
        reasons = "; ".join(dict.fromkeys(str(mismatch(selection, f)) for f in facts))
        raise SeriesNotAcceptedError(
            f"no series of the study is accepted by model {model.key} ({reasons})"
        )
    return max(accepted, key=lambda f: f.number_of_slices).series_instance_uid


def facts_of_datasets(study: str, series: str, datasets: Sequence[Dataset]) -> SeriesFacts:
    """The facts of a series from its instances (a pulled series)."""
    first = datasets[0] if datasets else Dataset()
    frames = sum(int(ds.get("NumberOfFrames", 1) or 1) for ds in datasets)

    def text(keyword: str) -> str | None:
        value = first.get(keyword)
        return str(value) if value not in (None, "") else None

    return SeriesFacts(
        study_instance_uid=study,
        series_instance_uid=series,
        modality=text("Modality"),
        body_part_examined=text("BodyPartExamined"),
        series_description=text("SeriesDescription"),
        manufacturer=text("Manufacturer"),
        number_of_slices=frames,
    )


def check_selection(series: ImageSeries, package: ModelPackage) -> None:
    """Raise :class:`SeriesNotAcceptedError` when the model does not accept the series."""
    header = series.headers[0]
    reason = package.manifest.input.mismatch(
        modality=series.volume.modality or str(header.get("Modality", "")),
        body_part_examined=str(header.get("BodyPartExamined", "")) or None,
        series_description=str(header.get("SeriesDescription", "")) or None,
        number_of_slices=series.volume.shape[0],
    )
    if reason is not None:
        raise SeriesNotAcceptedError(f"model {package.manifest.name} does not accept: {reason}")
