"""Exceptions of :mod:`radserve.training`; all derive from :class:`TrainingError`."""

from __future__ import annotations


class TrainingError(Exception):
    """Root of every error raised by :mod:`radserve.training`."""


class ConfigError(TrainingError):
    """The training configuration (or a ``--set`` override) is invalid."""


class DatalistError(TrainingError):
    """The datalist cannot be read, or cases in it cannot be used."""


class ExportError(TrainingError):
    """Export failed (unreadable checkpoint, or the exported model failed verification)."""
