"""The `digest` command line. Each submodule registers the commands of one stage; none holds business logic."""

from importlib import import_module

from digest.cli.app import app

# Registered in pipeline order, which is the order `digest --help` lists the commands in.
for stage in ("setup", "ingest", "summarise", "editions", "delivery", "run", "status", "demo"):
    import_module(f"digest.cli.{stage}")


def main() -> None:
    app()
