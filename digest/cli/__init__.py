"""The `digest` command line. Each submodule registers the commands of one stage; none holds business logic."""

from digest.cli import run, setup  # noqa: F401  (registers commands)
from digest.cli import delivery  # noqa: F401
from digest.cli import editions  # noqa: F401
from digest.cli import ingest  # noqa: F401
from digest.cli import summarise  # noqa: F401
from digest.cli.app import app


def main() -> None:
    app()
