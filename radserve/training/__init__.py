"""Training: datasets, MONAI transforms and networks, the training loop, evaluation, run
comparison and ONNX export of a model package.
"""

from radserve.training.checkpoint import (
    BEST,
    CONFIG,
    LAST,
    METRICS,
    load_checkpoint,
)
from radserve.training.compare import (
    MAX_CONFIG_BYTES,
    MAX_LINE_BYTES,
    RunSummary,
    config_differences,
    read_run,
    write_comparison,
)
from radserve.training.config import (
    LoadedConfig,
    SegResNetConfig,
    SplitConfig,
    UNetConfig,
    load_config,
    parse_config,
)
from radserve.training.datalist import (
    CaseRef,
    read_case,
    read_cases,
    read_datalist,
    split_names,
)
from radserve.training.errors import (
    ConfigError,
    DatalistError,
    ExportError,
    TrainingError,
)
from radserve.training.evaluate import (
    Evaluation,
    dice,
    evaluate_datalist,
    hd95_mm,
    write_evaluation,
)
from radserve.training.export import (
    CONFIG_FILE,
    ExportResult,
    export_package,
    restore,
    verify_onnx,
)
from radserve.training.from_package import (
    network_from_package,
)
from radserve.training.loop import (
    TrainResult,
    train,
)
from radserve.training.networks import (
    build_network,
)
from radserve.training.transforms import (
    IMAGE,
    LABEL,
    augmentation_transforms,
    case_to_dict,
    preprocessing_transforms,
)

__all__ = [
    "BEST",
    "CONFIG",
    "CONFIG_FILE",
    "IMAGE",
    "LABEL",
    "LAST",
    "MAX_CONFIG_BYTES",
    "MAX_LINE_BYTES",
    "METRICS",
    "CaseRef",
    "ConfigError",
    "DatalistError",
    "Evaluation",
    "ExportError",
    "ExportResult",
    "LoadedConfig",
    "RunSummary",
    "SegResNetConfig",
    "SplitConfig",
    "TrainResult",
    "TrainingError",
    "UNetConfig",
    "augmentation_transforms",
    "build_network",
    "case_to_dict",
    "config_differences",
    "dice",
    "evaluate_datalist",
    "export_package",
    "hd95_mm",
    "load_checkpoint",
    "load_config",
    "network_from_package",
    "parse_config",
    "preprocessing_transforms",
    "read_case",
    "read_cases",
    "read_datalist",
    "read_run",
    "restore",
    "split_names",
    "train",
    "verify_onnx",
    "write_comparison",
    "write_evaluation",
]
