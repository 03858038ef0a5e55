"""Every use of PyRadiomics' internals, in one place (written for ``pyradiomics==3.0.1``).

radserve runs PyRadiomics' extraction step by step on cropped images, which its public
``RadiomicsFeatureExtractor.execute`` does not offer; the rest of :mod:`radserve.radiomics`
reaches PyRadiomics only through this module. On an upgrade of PyRadiomics, check each item
below against the new version (``tests/radiomics`` compares radserve's values with a stock
``execute``):

* ``RadiomicsFeatureExtractor._getDefaultSettings`` (private): the settings the extractor
  starts from, so that a parameter set's settings are completed exactly as PyRadiomics does.
* ``RadiomicsFeatureExtractor.loadImage`` and ``computeShape``, called on their own, the
  latter with a stand-in for the extractor that carries only ``enabledFeatures``: the
  extractor's steps for one segment, without its whole-image work.
* ``radiomics.imageoperations`` (``checkMask``, ``resegmentMask``, ``normalizeImage``,
  ``cropToTumorMask``, ``binImage``, ``get<ImageType>Image``) and
  ``radiomics.generalinfo.GeneralInfo``: the building blocks of the extractor's steps.
* A feature-class subclass that overrides the private ``_applyBinning`` and reads the
  class's ``settings``, ``maskArray``, ``coefficients`` and ``voxelBased`` attributes: the
  grey-level discretization of a filtered image is computed once for all its classes.
* ``radiomics.cShape.calculate_coefficients`` (the C extension) and the module attribute
  ``radiomics.shape.cShape``, which is replaced by a proxy: the shape class can use
  :func:`radserve.radiomics.shape_mesh.mesh_coefficients` (same values, faster).
* The module attribute ``radiomics.handler`` (PyRadiomics' stderr log handler), removed so
  that PyRadiomics' messages stay with the segment they concern.
* ``radiomics.getFeatureClasses`` and ``radiomics.getParameterValidationFiles`` (public).
"""

from __future__ import annotations

import contextvars
import functools
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import numpy as np
import SimpleITK as sitk

#: The PyRadiomics version this module is written for (pinned in ``pyproject.toml``).
PYRADIOMICS_VERSION = "3.0.1"

_binning: contextvars.ContextVar[dict[Any, Any] | None] = contextvars.ContextVar(
    "radiomics_binning", default=None
)


# --- settings, feature classes, parameter schema -------------------------------------------


def default_settings() -> dict[str, Any]:
    """A fresh copy of the settings ``RadiomicsFeatureExtractor`` starts from."""
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    settings: dict[str, Any] = RadiomicsFeatureExtractor._getDefaultSettings()
    return settings


def feature_classes() -> dict[str, Any]:
    """PyRadiomics' feature classes by name (``firstorder``, ``glcm``, ``shape`` ...)."""
    from radiomics import getFeatureClasses

    classes: dict[str, Any] = getFeatureClasses()
    return classes


def parameter_schema() -> tuple[str, str]:
    """PyRadiomics' pykwalify schema file and its extension functions file."""
    from radiomics import getParameterValidationFiles

    schema_file, schema_funcs = getParameterValidationFiles()
    return str(schema_file), str(schema_funcs)


# --- the extractor's steps -------------------------------------------------------------------


def load_image(
    image: sitk.Image, mask: sitk.Image, general: Any, settings: Mapping[str, Any]
) -> tuple[sitk.Image, sitk.Image]:
    """``RadiomicsFeatureExtractor.loadImage``: normalize, resample, pre-crop as set."""
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    loaded: tuple[sitk.Image, sitk.Image] = RadiomicsFeatureExtractor.loadImage(
        image, mask, general, **settings
    )
    return loaded


def general_info(settings: Mapping[str, Any], image_types: Mapping[str, Any]) -> Any:
    """A ``GeneralInfo`` (the diagnostics collector) holding the settings and image types."""
    from radiomics import generalinfo

    general = generalinfo.GeneralInfo()
    general.addGeneralSettings(dict(settings))
    general.addEnabledImageTypes(dict(image_types))
    return general


def check_mask(image: sitk.Image, mask: sitk.Image, settings: Mapping[str, Any]) -> Any:
    """``imageoperations.checkMask``: the bounding box and a corrected mask (or None)."""
    from radiomics import imageoperations

    return imageoperations.checkMask(image, mask, **settings)


def resegment_mask(image: sitk.Image, mask: sitk.Image, settings: Mapping[str, Any]) -> Any:
    """``imageoperations.resegmentMask``: the mask restricted to ``resegmentRange``."""
    from radiomics import imageoperations

    return imageoperations.resegmentMask(image, mask, **settings)


def normalize_image(image: sitk.Image, settings: Mapping[str, Any]) -> sitk.Image:
    """``imageoperations.normalizeImage`` with the parameter set's settings."""
    from radiomics import imageoperations

    normalized: sitk.Image = imageoperations.normalizeImage(image, **settings)
    return normalized


def filtered_images(
    image_type: str, image: sitk.Image, mask: sitk.Image, args: Mapping[str, Any]
) -> Iterator[tuple[sitk.Image, str, dict[str, Any]]]:
    """``imageoperations.get<image_type>Image``: ``(image, type name, settings)`` per image."""
    from radiomics import imageoperations

    generator: Iterator[tuple[sitk.Image, str, dict[str, Any]]] = getattr(
        imageoperations, f"get{image_type}Image"
    )(image, mask, **args)
    return generator


def crop_to_mask(image: sitk.Image, mask: sitk.Image, box: Any) -> tuple[sitk.Image, sitk.Image]:
    """``imageoperations.cropToTumorMask``."""
    from radiomics import imageoperations

    cropped: tuple[sitk.Image, sitk.Image] = imageoperations.cropToTumorMask(image, mask, box)
    return cropped


def compute_shape(
    enabled: Mapping[str, list[str] | None],
    image: sitk.Image,
    mask: sitk.Image,
    box: Any,
    settings: Mapping[str, Any],
) -> dict[str, Any]:
    """``RadiomicsFeatureExtractor.computeShape`` for the ``enabled`` shape classes (class
    name: feature names, None or [] for all)."""
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    proxy = SimpleNamespace(enabledFeatures=dict(enabled))
    values: dict[str, Any] = RadiomicsFeatureExtractor.computeShape(
        proxy, image, mask, box, **settings
    )
    return values


# --- grey-level discretization, once per filtered image -----------------------------------


@contextmanager
def binning_cache() -> Iterator[None]:
    """Within this block, classes from :func:`shared_binning` share one discretization per
    bin setting (use one block per filtered image)."""
    token = _binning.set({})
    try:
        yield
    finally:
        _binning.reset(token)


@functools.cache
def shared_binning(feature_class: Any) -> Any:
    """``feature_class`` with its grey-level discretization computed once per filtered image.

    Every texture class (and first order) of a filtered image bins the same voxels with the
    same settings; the subclass takes the result from the cache of the enclosing
    :func:`binning_cache`. The binning itself is PyRadiomics' ``binImage``, with NumPy's
    minimum and maximum instead of Python's (same values).
    """

    def apply_binning(self: Any, matrix: Any) -> Any:
        cache = _binning.get()
        if cache is None or getattr(self, "voxelBased", False):
            return feature_class._applyBinning(self, matrix)
        key = (self.settings.get("binWidth", 25), self.settings.get("binCount"))
        if key not in cache:
            binned = bin_image(matrix, self.maskArray, self.settings)
            cache[key] = (binned, np.unique(binned[self.maskArray]))
        binned, gray_levels = cache[key]
        self.coefficients["grayLevels"] = gray_levels.copy()
        self.coefficients["Ng"] = int(np.max(gray_levels))
        return binned.copy()

    return type(
        feature_class.__name__,
        (feature_class,),
        # Keep PyRadiomics' logger name (radiomics.<class>) so its messages are captured.
        {"_applyBinning": apply_binning, "__module__": feature_class.__module__},
    )


def bin_image(matrix: Any, mask: Any, settings: Mapping[str, Any]) -> Any:
    """``imageoperations.binImage(matrix, mask, **settings)[0]``, faster for ``binWidth``."""
    from radiomics import imageoperations

    values = matrix[mask]
    if settings.get("binCount") is not None or values.size == 0 or np.isnan(values).any():
        return imageoperations.binImage(matrix, mask, **settings)[0]
    bin_width = settings.get("binWidth", 25)
    minimum = values.min()  # the same NumPy scalar as Python's min() over the array
    maximum = values.max()
    low = minimum - (minimum % bin_width)
    edges = np.arange(low, maximum + 2 * bin_width, bin_width)
    if len(edges) == 1:  # a flat region: one bin, as PyRadiomics
        edges = np.array([edges[0] - 0.5, edges[0] + 0.5])
    binned = np.zeros(matrix.shape, dtype="int")
    binned[mask] = np.digitize(values, edges)
    return binned


# --- shape coefficients ----------------------------------------------------------------------


def c_shape_coefficients(mask: Any, spacing: Any) -> tuple[float, float, Any]:
    """``radiomics.cShape.calculate_coefficients``: surface, volume and diameters (C)."""
    from radiomics import cShape

    surface, volume, diameters = cShape.calculate_coefficients(mask, spacing)
    return float(surface), float(volume), diameters


class _Coefficients:
    """Stands in for ``radiomics.cShape`` in ``radiomics.shape``: the C module, except when
    ``use()`` says to call ``alternative``."""

    def __init__(
        self,
        original: Any,
        use: Callable[[], bool],
        alternative: Callable[[Any, Any], Any],
    ) -> None:
        self._original = original
        self._use = use
        self._alternative = alternative

    def calculate_coefficients(self, mask: Any, spacing: Any) -> Any:
        if self._use():
            return self._alternative(mask, spacing)
        return self._original.calculate_coefficients(mask, spacing)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._original, name)


def route_shape_coefficients(
    use: Callable[[], bool], alternative: Callable[[Any, Any], Any]
) -> None:
    """Make PyRadiomics' shape class call ``alternative(mask, spacing)`` instead of the C
    function whenever ``use()`` is true (once per process; later calls change nothing)."""
    import radiomics.shape

    if not isinstance(radiomics.shape.cShape, _Coefficients):
        radiomics.shape.cShape = _Coefficients(radiomics.shape.cShape, use, alternative)


# --- logging ---------------------------------------------------------------------------------


def replace_log_handler(handler: logging.Handler) -> bool:
    """Send PyRadiomics' log records to ``handler`` instead of its stderr handler.

    Returns:
        False when ``handler``'s type was installed already (nothing is changed).
    """
    radiomics_log = logging.getLogger("radiomics")
    if any(isinstance(h, type(handler)) for h in radiomics_log.handlers):
        return False
    import radiomics

    stock = getattr(radiomics, "handler", None)
    if stock is not None:
        radiomics_log.removeHandler(stock)
    radiomics_log.addHandler(handler)
    radiomics_log.setLevel(logging.WARNING)
    radiomics_log.propagate = False
    return True
