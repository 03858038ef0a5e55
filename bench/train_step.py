"""Training-step and inference benchmark of the demo model configuration on the CPU.

(1) Training throughput: the demo config (``configs/train/sts_ct_gtv.yaml``) on its first
    ``--cases`` training cases, cached and preprocessed as in training; ``--steps`` timed
    optimiser steps (after two untimed ones) with the configured augmentations, batch size
    and patch size. Reports patches (samples) per second, and peak memory: the process's
    peak resident set size (``resource.getrusage``, includes torch's allocations) and the
    peak of Python-level allocations during the timed steps (``tracemalloc``).
(2) Inference on one case (STS_002, preprocessed by the server's ``preprocess``): MONAI
    sliding-window inference with the manifest's window settings, the network run by
    PyTorch eager against ONNX Runtime (CPU provider), both with ``--threads`` threads.
    Median of ``--repeats`` runs after one warm-up run each, alternating.

This is a benchmark, not a test: it asserts nothing and prints a Markdown table.

Run: ``.venv/bin/python bench/train_step.py [--package models/sts-ct-gtv/1.1.0]``
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from monai.data.dataloader import DataLoader
from monai.data.dataset import CacheDataset
from monai.inferers.utils import sliding_window_inference
from monai.losses.dice import DiceCELoss
from monai.transforms.compose import Compose
from monai.utils.misc import set_determinism

from radserve.inference import load_model_package, preprocess
from radserve.training import (
    IMAGE,
    LABEL,
    augmentation_transforms,
    build_network,
    case_to_dict,
    load_config,
    preprocessing_transforms,
    read_cases,
    read_datalist,
    restore,
    split_names,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG = REPO_ROOT / "configs" / "train" / "sts_ct_gtv.yaml"


def bench_training(cases: int, steps: int, threads: int) -> dict[str, Any]:
    """Timed training steps of the demo configuration."""
    loaded = load_config(CONFIG)
    config = loaded.config
    torch.set_num_threads(threads)
    set_determinism(seed=0)
    refs = read_datalist(loaded.resolve(config.data.datalist))
    training, _ = split_names([r.name for r in refs], config.data.split)
    chosen = [r for r in refs if r.name in training[:cases]]
    data, _ = read_cases(chosen, skip_bad_cases=False, max_label=1)
    pre = preprocessing_transforms(config.preprocessing)
    aug = augmentation_transforms(config.augmentation, patch_size=config.inference.patch_size)
    dataset = CacheDataset(
        [case_to_dict(c) for c in data],
        transform=Compose([*pre.transforms, *aug.transforms]),
        progress=False,
    )
    loader = DataLoader(dataset, batch_size=config.optim.batch_size, shuffle=True)
    network = build_network(config.network, out_channels=2)
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-3)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    patches, timed = 0, 0.0
    done = 0
    tracemalloc.start()
    while done < steps + 2:
        for batch in loader:
            if done == 2:
                tracemalloc.reset_peak()
            started = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(network(batch[IMAGE].as_tensor()), batch[LABEL].as_tensor())
            loss.backward()
            optimizer.step()
            if done >= 2:
                timed += time.perf_counter() - started
                patches += int(batch[IMAGE].shape[0])
            done += 1
            if done >= steps + 2:
                break
    _, python_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "cases": len(data),
        "steps": steps,
        "patches": patches,
        "patch_size": list(config.inference.patch_size),
        "samples_per_s": patches / timed,
        "step_s": timed / steps,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "python_peak_mb": python_peak / 2**20,
        "threads": threads,
    }


def bench_inference(
    package_dir: Path, checkpoint: Path, repeats: int, threads: int
) -> dict[str, Any]:
    """PyTorch eager against ONNX Runtime on one preprocessed case, sliding window."""
    torch.set_num_threads(threads)
    package = load_model_package(package_dir)
    manifest = package.manifest
    loaded = load_config(CONFIG)
    refs = {r.name: r for r in read_datalist(loaded.resolve(loaded.config.data.datalist))}
    case = read_cases([refs["STS_002"]], skip_bad_cases=False, max_label=1)[0][0]
    image = torch.from_numpy(preprocess(case.image, manifest.preprocessing).array[np.newaxis])
    _, _, network = restore(checkpoint)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(
        str(package.model_path), options, providers=["CPUExecutionProvider"]
    )

    def run_onnx(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {"image": x.numpy()})[0])

    spec = manifest.inference

    def infer(predictor: Any) -> float:
        started = time.perf_counter()
        with torch.no_grad():
            sliding_window_inference(
                image,
                roi_size=spec.patch_size,
                sw_batch_size=spec.batch_size,
                predictor=predictor,
                overlap=spec.overlap,
                mode=spec.blending,
                sigma_scale=spec.sigma_scale,
            )
        return time.perf_counter() - started

    infer(network), infer(run_onnx)
    times: dict[str, list[float]] = {"torch": [], "onnxruntime": []}
    for _ in range(repeats):
        times["torch"].append(infer(network))
        times["onnxruntime"].append(infer(run_onnx))
    torch_s, ort_s = (statistics.median(times[k]) for k in ("torch", "onnxruntime"))
    return {
        "case": "STS_002",
        "network_grid": list(image.shape[2:]),
        "torch_eager_s": torch_s,
        "onnxruntime_s": ort_s,
        "torch_over_onnxruntime": torch_s / ort_s,
        "repeats": repeats,
        "threads": threads,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=6)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--package", type=Path, default=REPO_ROOT / "models/sts-ct-gtv/1.1.0")
    parser.add_argument("--checkpoint", type=Path, default=Path("runs/sts-ct-gtv/best.pt"))
    parser.add_argument("--json", type=Path, default=REPO_ROOT / "bench/results/train_step.json")
    args = parser.parse_args()
    training = bench_training(args.cases, args.steps, args.threads)
    inference = bench_inference(args.package, args.checkpoint, args.repeats, args.threads)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "machine": platform.processor() or platform.machine(),
        "training": training,
        "inference": inference,
    }
    args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    t, i = training, inference
    print(
        f"| training step ({t['threads']} threads, batch of {t['patches'] // t['steps']} "
        f"patches {t['patch_size']}) | {t['step_s']:.2f} s/step | "
        f"{t['samples_per_s']:.2f} samples/s |"
    )
    print(
        f"| peak memory | {t['peak_rss_mb']:.0f} MB RSS | {t['python_peak_mb']:.0f} MB "
        "Python (tracemalloc) |"
    )
    print(
        f"| inference STS_002, grid {i['network_grid']} | PyTorch eager {i['torch_eager_s']:.3f}"
        f" s | ONNX Runtime {i['onnxruntime_s']:.3f} s | ratio "
        f"{i['torch_over_onnxruntime']:.2f}x |"
    )


if __name__ == "__main__":
    main()
