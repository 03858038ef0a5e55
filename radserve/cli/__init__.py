"""The ``radserve`` command line: one module per command group."""

from radserve.cli.main import app

__all__ = ["app"]
