"""``python -m radserve`` runs the ``radserve`` command."""

from radserve.cli import app

app(prog_name="radserve")
