"""Radiomic features per segment: PyRadiomics parameter sets, extraction (PyRadiomics-identical
values), IBSI codes and units, SR measurement items, feature tables, batches, the worker pool
and the runner the job pipeline calls.
"""

from radserve.radiomics.batch import (
    BatchOptions,
    CaseSpec,
    extract_cases,
    read_cases_csv,
)
from radserve.radiomics.codes import (
    PRIVATE_SCHEME,
    PRIVATE_SCHEME_NAME,
    PRIVATE_SCHEME_ORGANIZATION,
    PRIVATE_SCHEME_VERSION,
    FeatureName,
    feature_code,
    feature_unit,
    ibsi_concept,
    ibsi_mapping,
    private_code,
)
from radserve.radiomics.cropping import (
    bounding_box,
    plan_crops,
)
from radserve.radiomics.errors import (
    EmptyMaskError,
    InputError,
    MaskGeometryError,
    ParameterSetError,
    RadiomicsError,
    RadiomicsStepError,
    RadiomicsTimeoutError,
    SegmentTooSmallError,
    UnknownLabelError,
    WorkerStoppedError,
)
from radserve.radiomics.extract import (
    ExtractionOptions,
    extract_features,
)
from radserve.radiomics.features import (
    SegmentFeatures,
)
from radserve.radiomics.ibsi import (
    render_markdown,
    run_phantom,
    write_conformance,
)
from radserve.radiomics.inputs import (
    read_case,
)
from radserve.radiomics.params import (
    DEFAULT_PARAMETER_SET,
    PARAMETER_SET_DIR,
    ParameterSet,
    list_parameter_sets,
    load_parameter_set,
)
from radserve.radiomics.pool import (
    RadiomicsPool,
    WorkerPool,
    default_workers,
    process_pool,
)
from radserve.radiomics.runner import (
    RadiomicsOptions,
    RadiomicsRunner,
    feature_csv,
    resolve_parameter_set,
    without_features,
)
from radserve.radiomics.shape_mesh import (
    fast_shape,
    mesh_coefficients,
)
from radserve.radiomics.sr_features import (
    CODING_SCHEMES,
    extra_measurements,
    parse_description,
)
from radserve.radiomics.tables import (
    INPUT_COLUMNS,
    CaseFeatures,
    feature_table,
    write_csv,
    write_json,
    write_table,
)

__all__ = [
    "CODING_SCHEMES",
    "DEFAULT_PARAMETER_SET",
    "INPUT_COLUMNS",
    "PARAMETER_SET_DIR",
    "PRIVATE_SCHEME",
    "PRIVATE_SCHEME_NAME",
    "PRIVATE_SCHEME_ORGANIZATION",
    "PRIVATE_SCHEME_VERSION",
    "BatchOptions",
    "CaseFeatures",
    "CaseSpec",
    "EmptyMaskError",
    "ExtractionOptions",
    "FeatureName",
    "InputError",
    "MaskGeometryError",
    "ParameterSet",
    "ParameterSetError",
    "RadiomicsError",
    "RadiomicsOptions",
    "RadiomicsPool",
    "RadiomicsRunner",
    "RadiomicsStepError",
    "RadiomicsTimeoutError",
    "SegmentFeatures",
    "SegmentTooSmallError",
    "UnknownLabelError",
    "WorkerPool",
    "WorkerStoppedError",
    "bounding_box",
    "default_workers",
    "extra_measurements",
    "extract_cases",
    "extract_features",
    "fast_shape",
    "feature_code",
    "feature_csv",
    "feature_table",
    "feature_unit",
    "ibsi_concept",
    "ibsi_mapping",
    "list_parameter_sets",
    "load_parameter_set",
    "mesh_coefficients",
    "parse_description",
    "plan_crops",
    "private_code",
    "process_pool",
    "read_case",
    "read_cases_csv",
    "render_markdown",
    "resolve_parameter_set",
    "run_phantom",
    "without_features",
    "write_conformance",
    "write_csv",
    "write_json",
    "write_table",
]
