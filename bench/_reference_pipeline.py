"""The reference pipeline of ``bench/pipeline.py``, built the way a MONAI Deploy application is.

Per series, from a folder of DICOM files (where MONAI Deploy's Informatics Gateway leaves a
received study):

* load: MONAI's ``PydicomReader`` (pydicom, as MONAI Deploy's ``DICOMDataLoaderOperator`` and
  ``DICOMSeriesToVolumeOperator``) through ``LoadImaged``; the datasets it read are kept as
  the SEG's source images, as MONAI Deploy's SEG writer receives them;
* preprocess: ``EnsureChannelFirstd``, ``Orientationd`` (RAS), ``Spacingd`` (bilinear,
  border), ``ScaleIntensityRanged`` (window to [0, 1], clipped), from the model manifest;
* inference: ``monai.inferers.sliding_window_inference`` (manifest patch size, overlap,
  Gaussian blending, batch size) with the PyTorch network in eager mode under
  ``torch.inference_mode``; the network's forward passes are timed separately;
* postprocess: ``AsDiscrete(argmax=True)``, ``Invertd`` back to the source grid (nearest),
  ``RemoveSmallObjects`` (the manifest's ``min_component_voxels``, face connectivity);
* SEG: highdicom's default ``hd.seg.Segmentation`` (what MONAI Deploy's
  ``DICOMSegmentationWriterOperator`` calls), saved to a file;
* export: the SEG file sent over STOW-RS with the same client as radserve's export.

MONAI Deploy's own examples invert the softmax probabilities (two float channels) before the
argmax; inverting the argmax labels, as here, is the cheaper choice, so the reference is not
handicapped. The network is built once and kept warm (a MONAI Application Package started
per job would also pay for Python, torch and the model load; not counted here).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import numpy.typing as npt
import pydicom
import torch
from monai.data.image_reader import PydicomReader
from monai.inferers.utils import sliding_window_inference
from monai.transforms.compose import Compose
from monai.transforms.intensity.dictionary import ScaleIntensityRanged
from monai.transforms.io.dictionary import LoadImaged
from monai.transforms.post.array import AsDiscrete, RemoveSmallObjects
from monai.transforms.post.dictionary import Invertd
from monai.transforms.spatial.dictionary import Orientationd, Spacingd
from monai.transforms.utility.dictionary import EnsureChannelFirstd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from torch import nn

from radserve.inference import Manifest
from radserve.server import PacsClient

IMAGE, PRED = "image", "pred"


class _KeepingPydicomReader(PydicomReader):
    """MONAI's pydicom reader, keeping the datasets it read (the SEG's source images)."""

    datasets: list[Dataset]

    def read(self, data: Any, **kwargs: Any) -> Any:
        result = super().read(data, **kwargs)
        self.datasets = list(result) if isinstance(result, list) else [result]
        return result


@dataclass(frozen=True)
class ReferenceRun:
    """One run of the reference pipeline.

    Attributes:
        stages_s: Seconds per stage (``load`` .. ``export``).
        forward_s: Seconds inside the network's forward passes (part of ``inference``).
        windows: Windows run through the network.
        labels_by_instance_number: The label of each source slice ``[rows, columns]``, by
            its Instance Number (to compare with radserve's label map).
        seg_bytes: Size of the SEG file.
    """

    stages_s: dict[str, float]
    forward_s: float
    windows: int
    labels_by_instance_number: dict[int, npt.NDArray[np.uint8]]
    seg_bytes: int


class ReferencePipeline:
    """A MONAI Deploy style segmentation application (see the module docstring).

    Args:
        network: The PyTorch network (eval mode).
        manifest: The model manifest (preprocessing, sliding window, labels).
        threads: torch intra-op threads.
    """

    def __init__(self, network: nn.Module, manifest: Manifest, *, threads: int) -> None:
        torch.set_num_threads(threads)
        self._network = network.eval()
        self._manifest = manifest
        pre = manifest.preprocessing
        self._reader = _KeepingPydicomReader()
        low, high = pre.intensity.window_hu
        self._pre = Compose(
            [
                # An instance is accepted (and documented); the annotation names classes only.
                LoadImaged(IMAGE, reader=self._reader, image_only=True),  # type: ignore[arg-type]
                EnsureChannelFirstd(IMAGE),
                Orientationd(IMAGE, axcodes=pre.orientation),
                Spacingd(
                    IMAGE,
                    pixdim=pre.target_spacing_mm,
                    mode="bilinear",
                    padding_mode="border",
                ),
                ScaleIntensityRanged(IMAGE, a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True),
            ]
        )
        self._invert = Invertd(PRED, transform=self._pre, orig_keys=IMAGE, nearest_interp=True)
        self._argmax = AsDiscrete(argmax=True)
        min_voxels = manifest.inference.min_component_voxels
        self._remove_small = (
            RemoveSmallObjects(min_size=min_voxels, connectivity=1)
            if min_voxels is not None
            else None
        )

    def run(self, folder: Path, out_dir: Path, pacs: PacsClient) -> ReferenceRun:
        """Segment the series in ``folder``, write the SEG under ``out_dir``, send it."""
        stages: dict[str, float] = {}
        forward: list[float] = []
        windows = 0

        def network(batch: torch.Tensor) -> torch.Tensor:
            nonlocal windows
            windows += int(batch.shape[0])
            started = time.perf_counter()
            output: torch.Tensor = self._network(batch)
            forward.append(time.perf_counter() - started)
            return output

        spec = self._manifest.inference
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # MONAI's deprecation notices, once per call
            started = time.perf_counter()
            data: dict[Hashable, Any] = {IMAGE: str(folder)}
            data = self._pre.transforms[0](data)
            datasets = self._reader.datasets
            stages["load"] = _lap(started)

            started = time.perf_counter()
            for transform in self._pre.transforms[1:]:
                data = transform(data)
            stages["preprocess"] = _lap(started)

            started = time.perf_counter()
            with torch.inference_mode():
                logits = sliding_window_inference(
                    data[IMAGE].unsqueeze(0),
                    roi_size=spec.patch_size,
                    sw_batch_size=spec.batch_size,
                    predictor=network,
                    overlap=spec.overlap,
                    mode=spec.blending,
                    sigma_scale=spec.sigma_scale,
                )
            stages["inference"] = _lap(started)

            started = time.perf_counter()
            with torch.inference_mode():
                data[PRED] = self._argmax(logits[0])
                labels = self._invert(data)[PRED]
                if self._remove_small is not None:
                    labels = self._remove_small(labels)
            # [1, columns, rows, slices in Instance Number order] -> [slices, rows, columns]
            mask = np.ascontiguousarray(
                np.asarray(labels[0].numpy(), dtype=np.uint8).transpose(2, 1, 0)
            )
            stages["postprocess"] = _lap(started)

        started = time.perf_counter()
        sources = sorted(datasets, key=lambda ds: int(ds.InstanceNumber))  # the reader's order
        seg = highdicom_seg(sources, mask, self._manifest)
        seg_path = out_dir / f"{seg.SOPInstanceUID}.dcm"
        seg.save_as(seg_path, enforce_file_format=True)
        stages["SEG"] = _lap(started)

        started = time.perf_counter()
        pacs.store([pydicom.dcmread(seg_path)])
        stages["export"] = _lap(started)
        by_number = {int(ds.InstanceNumber): mask[k] for k, ds in enumerate(sources)}
        return ReferenceRun(
            stages_s=stages,
            forward_s=sum(forward),
            windows=windows,
            labels_by_instance_number=by_number,
            seg_bytes=seg_path.stat().st_size,
        )


def highdicom_seg(
    sources: Sequence[Dataset], mask: npt.NDArray[np.uint8], manifest: Manifest
) -> hd.seg.Segmentation:
    """A BINARY SEG with highdicom's default constructor, as MONAI Deploy's SEG writer."""
    algorithm = hd.AlgorithmIdentificationSequence(
        name=manifest.name,
        family=codes.cid7162.ArtificialIntelligence,
        version=manifest.version,
    )
    present = {int(v) for v in np.unique(mask)} - {0}
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=label.name,
            segmented_property_category=_code(label.category),
            segmented_property_type=_code(label.type),
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
            algorithm_identification=algorithm,
        )
        for number, label in enumerate(
            (label for label in manifest.labels if label.label in present), start=1
        )
    ]
    kept = [label.label for label in manifest.labels if label.label in present]
    # BINARY with several segments: one channel per segment, numbered 1..N.
    pixel_array = (
        mask
        if kept == list(range(1, len(kept) + 1))
        else np.stack([mask == value for value in kept], axis=-1).astype(np.uint8)
    )
    return hd.seg.Segmentation(
        source_images=list(sources),
        pixel_array=pixel_array,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=901,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="MONAI Deploy style reference",
        manufacturer_model_name=manifest.name,
        software_versions=manifest.version,
        device_serial_number="0000",
    )


def _code(code: Any) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(value=code.value, scheme_designator=code.scheme, meaning=code.meaning)


def _lap(started: float) -> float:
    return time.perf_counter() - started
