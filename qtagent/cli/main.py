"""The `qtagent` command: entry point, global options and error reporting."""

from __future__ import annotations

import logging
import sys

import click

from qtagent import __version__
from qtagent.cli.lab import lab
from qtagent.errors import QtagentError


class QtagentGroup(click.Group):
    """Turns every QtagentError into its diagnostics on stderr and its exit code."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except QtagentError as err:
            click.echo(f"qtagent: error: {err.diagnostics()}", err=True)
            sys.exit(err.exit_code)


@click.group(cls=QtagentGroup, context_settings={"auto_envvar_prefix": "QTAGENT"})
@click.version_option(__version__, prog_name="qtagent")
@click.option(
    "-v", "--verbose", count=True, help="-v info, -vv debug (kernel effects as shell commands)."
)
def cli(verbose: int) -> None:
    """qtagent: SR-IOV VFs from sysfs to running VMs."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


cli.add_command(lab)


def main() -> None:
    cli()
