"""Export a checkpoint to a model package ``models/<name>/<version>/``, verifying it.

Writes ``model.onnx`` (input ``image`` ``[N, 1, X, Y, Z]``, output ``logits``
``[N, K, X, Y, Z]``, dynamic batch and spatial axes, opset 17), ``manifest.yaml``,
``MODEL_CARD.md`` and ``training_config.yaml`` (the exact configuration text the checkpoint
was trained with). Export verifies itself before the package is complete: every validation
case, preprocessed exactly as the server does, goes through PyTorch and ONNX Runtime, and the
arg-max labels must agree on at least :data:`MIN_ARGMAX_AGREEMENT` of the voxels. The
package is then evaluated through the server's own :class:`Predictor` on the validation
cases, and those metrics go into the manifest.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import torch
from torch import nn

from radserve.inference import (
    MANIFEST_FILE,
    MODEL_FILE,
    InferenceSpec,
    Manifest,
    Provenance,
    manifest_to_yaml,
    preprocess,
    sha256_of_file,
)
from radserve.training.checkpoint import load_checkpoint
from radserve.training.config import LoadedConfig, parse_config
from radserve.training.datalist import Case, read_cases, read_datalist
from radserve.training.errors import ExportError
from radserve.training.evaluate import evaluate_package
from radserve.training.networks import build_network, size_divisor

logger = logging.getLogger(__name__)

OPSET = 17
MIN_ARGMAX_AGREEMENT = 0.999
CONFIG_FILE = "training_config.yaml"
CARD_FILE = "MODEL_CARD.md"
INPUT_NAME, OUTPUT_NAME = "image", "logits"


@dataclass(frozen=True)
class ParityReport:
    """ONNX Runtime against PyTorch on the same inputs.

    Attributes:
        max_abs_logit_diff: Largest absolute logit difference over all cases.
        argmax_agreement: Share of voxels with the same arg-max label (all cases pooled).
        voxels: Voxels compared.
    """

    max_abs_logit_diff: float
    argmax_agreement: float
    voxels: int


@dataclass(frozen=True)
class ExportResult:
    """A written and verified package."""

    directory: Path
    manifest: Manifest
    parity: ParityReport
    metrics: dict[str, float]


def restore(checkpoint_path: Path) -> tuple[dict[str, Any], LoadedConfig, nn.Module]:
    """The checkpoint, its configuration and its network (eval mode, CPU).

    Raises:
        TrainingError: Unreadable checkpoint (an :class:`ExportError` for a bad config).
    """
    checkpoint = load_checkpoint(checkpoint_path)
    loaded = parse_config(
        checkpoint["config_yaml"], base_dir=Path(checkpoint["config_dir"]), source="checkpoint"
    )
    network = build_network(
        loaded.config.network, out_channels=len(loaded.config.package.labels) + 1
    )
    network.load_state_dict(checkpoint["model"])
    network.eval()
    return checkpoint, loaded, network


def export_onnx(network: nn.Module, path: Path, *, example_shape: Sequence[int]) -> None:
    """Write ``network`` as ONNX with dynamic batch and spatial axes."""
    example = torch.zeros((1, 1, *example_shape), dtype=torch.float32)
    axes = {0: "batch", 2: "x", 3: "y", 4: "z"}
    with torch.no_grad():
        torch.onnx.export(
            network,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: axes, OUTPUT_NAME: axes},
            opset_version=OPSET,
            dynamo=False,
        )


def pad_to_multiple(
    array: npt.NDArray[np.float32], divisor: Sequence[int]
) -> npt.NDArray[np.float32]:
    """``[1, X, Y, Z]`` padded at the end (edge values) to multiples of ``divisor``."""
    pads = [(0, 0)] + [(0, (-n) % d) for n, d in zip(array.shape[1:], divisor, strict=True)]
    return np.pad(array, pads, mode="edge")


def verify_onnx(
    network: nn.Module, onnx_path: Path, images: Sequence[npt.NDArray[np.float32]]
) -> ParityReport:
    """Run whole images ``[1, X, Y, Z]`` through PyTorch and ONNX Runtime and compare.

    Raises:
        ExportError: Arg-max agreement below :data:`MIN_ARGMAX_AGREEMENT`, or non-finite
            outputs.
    """
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    max_diff, same, total = 0.0, 0, 0
    for image in images:
        batch = image[np.newaxis].astype(np.float32)
        with torch.no_grad():
            expected = network(torch.from_numpy(batch)).numpy()
        actual = np.asarray(session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0])
        if actual.shape != expected.shape or not np.isfinite(actual).all():
            raise ExportError(
                f"ONNX output {actual.shape} (finite: {bool(np.isfinite(actual).all())}) does "
                f"not match PyTorch's {expected.shape}"
            )
        max_diff = max(max_diff, float(np.abs(actual - expected).max()))
        same += int((actual.argmax(axis=1) == expected.argmax(axis=1)).sum())
        total += int(expected[:, 0].size)
    report = ParityReport(max_abs_logit_diff=max_diff, argmax_agreement=same / total, voxels=total)
    logger.info(
        "ONNX Runtime vs PyTorch on %d images: max |logit diff| %.3g, arg-max agreement %.6f",
        len(images),
        report.max_abs_logit_diff,
        report.argmax_agreement,
    )
    if report.argmax_agreement < MIN_ARGMAX_AGREEMENT:
        raise ExportError(
            f"exported model disagrees with PyTorch: arg-max agreement "
            f"{report.argmax_agreement:.6f} < {MIN_ARGMAX_AGREEMENT} (max |logit diff| "
            f"{report.max_abs_logit_diff:.3g})"
        )
    return report


def export_package(checkpoint_path: str | Path, out: str | Path) -> ExportResult:
    """Export ``checkpoint_path`` into the package folder ``out`` and verify it.

    ``out`` must be ``.../<name>/<version>/`` matching the configuration. On failure the
    folder is removed again.

    Raises:
        ExportError: Wrong folder name, the ONNX model fails verification, or the package
            does not load.
        TrainingError: Unreadable checkpoint.
        DatalistError: Validation cases cannot be read.
    """
    out = Path(out)
    checkpoint, loaded, network = restore(Path(checkpoint_path))
    config = loaded.config
    if (out.parent.name, out.name) != (config.name, config.version):
        raise ExportError(f"package folder must end in {config.name}/{config.version}/, got {out}")
    cases = _validation_cases(loaded, checkpoint)
    images = [
        pad_to_multiple(
            preprocess(c.image, config.preprocessing).array, size_divisor(config.network)
        )
        for c in cases
    ]
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        model_path = out / MODEL_FILE
        export_onnx(network, model_path, example_shape=config.inference.patch_size)
        parity = verify_onnx(network, model_path, images)
        (out / CONFIG_FILE).write_text(loaded.text, encoding="utf-8")
        training_metrics = {
            "training_validation_dice_network_grid": float(checkpoint["best_dice"]),
            "best_epoch": float(checkpoint["best_epoch"]),
            "onnx_max_abs_logit_diff": parity.max_abs_logit_diff,
            "onnx_argmax_agreement": parity.argmax_agreement,
        }
        _write_manifest(out, loaded, training_metrics)
        evaluation = evaluate_package(out, cases)
        metrics = {**evaluation.manifest_metrics(), **training_metrics}
        manifest = _write_manifest(out, loaded, metrics)
        card = model_card(manifest, loaded, evaluation.case_table(), parity, checkpoint)
        (out / CARD_FILE).write_text(card, encoding="utf-8")
    except BaseException:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        else:
            (out / MODEL_FILE).unlink(missing_ok=True)
        raise
    logger.info(
        "exported %s %s to %s (%.1f MB)",
        config.name,
        config.version,
        out,
        model_path.stat().st_size / 1e6,
    )
    return ExportResult(directory=out, manifest=manifest, parity=parity, metrics=metrics)


def _validation_cases(loaded: LoadedConfig, checkpoint: dict[str, Any]) -> list[Case]:
    config = loaded.config
    wanted = set(checkpoint["validation_cases"])
    refs = [r for r in read_datalist(loaded.resolve(config.data.datalist)) if r.name in wanted]
    cases, _ = read_cases(
        refs,
        skip_bad_cases=False,
        max_label=len(config.package.labels),
        roi_names=config.data.roi_names,
    )
    if not cases:
        raise ExportError("the checkpoint names no validation cases to verify the export on")
    return cases


def _write_manifest(out: Path, loaded: LoadedConfig, metrics: dict[str, float]) -> Manifest:
    config = loaded.config
    package = config.package
    manifest = Manifest(
        name=config.name,
        version=config.version,
        model_sha256=sha256_of_file(out / MODEL_FILE),
        input=package.input,
        preprocessing=config.preprocessing,
        inference=InferenceSpec.model_validate(config.inference.model_dump()),
        labels=package.labels,
        radiomics_parameter_set=package.radiomics_parameter_set,
        provenance=Provenance(
            training_config_sha256=hashlib.sha256(loaded.text.encode("utf-8")).hexdigest(),
            dataset=f"{package.dataset} (licence: {package.dataset_licence})",
            validation_metrics={k: round(v, 6) for k, v in metrics.items()},
            intended_use=package.intended_use,
            created=datetime.now(UTC).replace(microsecond=0),
        ),
    )
    (out / MANIFEST_FILE).write_text(manifest_to_yaml(manifest), encoding="utf-8")
    return manifest


def model_card(
    manifest: Manifest,
    loaded: LoadedConfig,
    case_table: str,
    parity: ParityReport,
    checkpoint: dict[str, Any],
) -> str:
    """A short Markdown model card."""
    config = loaded.config
    pre = manifest.preprocessing
    metrics = manifest.provenance.validation_metrics
    labels = ", ".join(
        f"{s.label} = {s.name} (SCT {s.type.value} {s.type.meaning})" for s in manifest.labels
    )
    lines = [
        f"# {manifest.name} {manifest.version}",
        "",
        config.package.description.strip(),
        "",
        f"**Intended use:** {manifest.provenance.intended_use}.",
        "",
        "## Model",
        "",
        f"- Network: MONAI {config.network.name} ({_network_summary(loaded)}), "
        f"{len(manifest.labels) + 1} output channels; labels: {labels}.",
        f"- Input: {', '.join(manifest.input.modalities)}, at least "
        f"{manifest.input.min_slices} slices; orientation {pre.orientation}, "
        f"{list(pre.target_spacing_mm)} mm, window {list(pre.intensity.window_hu)} HU, "
        f"{pre.intensity.normalisation.method}.",
        f"- Sliding window {list(manifest.inference.patch_size)} voxels, overlap "
        f"{manifest.inference.overlap}, {manifest.inference.blending} blending.",
        f"- ONNX opset {OPSET}, dynamic batch and spatial axes; sha256 `{manifest.model_sha256}`.",
        "",
        "## Data",
        "",
        f"{manifest.provenance.dataset}.",
        "",
        f"Training cases: {len(checkpoint['training_cases'])}; validation cases: "
        f"{', '.join(checkpoint['validation_cases'])}.",
        "",
        "## Validation (through the server's Predictor, original image grid)",
        "",
        case_table,
        "",
        f"Mean Dice {metrics.get('dice_mean', float('nan')):.3f}; "
        f"the exported weights are those of epoch {int(checkpoint['best_epoch'])}, the best "
        f"validation Dice of a run configured for {config.optim.epochs} epochs (Dice on the "
        f"network grid during training: {float(checkpoint['best_dice']):.3f}).",
        "",
        f"Export check: ONNX Runtime vs PyTorch max |logit difference| "
        f"{parity.max_abs_logit_diff:.2e}, arg-max agreement {parity.argmax_agreement:.6f} "
        f"over {parity.voxels} voxels.",
        "",
        "## Limitations",
        "",
        "- Trained on crops of about 5 cm around the tumour; whole-body or whole-limb scans "
        "are outside the training distribution.",
        "- Small validation set; the numbers above are not a clinical performance claim.",
        "- Not a medical device: research use only, not for diagnostic use.",
        "",
        f"Training configuration: `{CONFIG_FILE}` (sha256 "
        f"`{manifest.provenance.training_config_sha256}`).",
        "",
    ]
    return "\n".join(lines)


def _network_summary(loaded: LoadedConfig) -> str:
    fields = loaded.config.network.model_dump(exclude={"name"})
    return ", ".join(f"{k}={v}" for k, v in fields.items())
