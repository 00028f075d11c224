"""The `qtagent` command: entry point, global options and error reporting."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from qtagent import __version__
from qtagent.cli.host_cmds import apply_cmd, pf, vf
from qtagent.cli.lab import lab
from qtagent.cli.output import Options, VisibleFormatter, visible
from qtagent.cli.vm_cmds import vm
from qtagent.errors import QtagentError
from qtagent.ops.context import HostContext, HostPaths
from qtagent.store.sqlite import DEFAULT_PATH


class QtagentGroup(click.Group):
    """Turns every QtagentError into its diagnostics on stderr and its exit code."""

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except QtagentError as err:
            text = visible(err.diagnostics(), keep_newlines=True)
            click.echo(f"qtagent: error: {text}", err=True)
            sys.exit(err.exit_code)


@click.group(cls=QtagentGroup, context_settings={"auto_envvar_prefix": "QTAGENT"})
@click.version_option(__version__, prog_name="qtagent")
@click.option("--json", "as_json", is_flag=True, envvar="QTAGENT_JSON", help="Print JSON.")
@click.option(
    "--sysfs-root", type=click.Path(file_okay=False, path_type=Path), default=Path("/sys"),
    envvar="QTAGENT_SYSFS_ROOT", show_default=True, help="Where sysfs is mounted.",
)  # fmt: skip
@click.option(
    "--db", "db_path", type=click.Path(dir_okay=False, path_type=Path), default=DEFAULT_PATH,
    envvar="QTAGENT_DB", show_default=True, help="The allocation database (SQLite).",
)  # fmt: skip
@click.option(
    "--libvirt-uri", default="qemu:///system", envvar="QTAGENT_LIBVIRT_URI", show_default=True,
    help="The libvirt connection for VM commands.",
)  # fmt: skip
@click.option(
    "--netlink", type=click.Choice(["rtnl", "pyroute2"]), default="rtnl",
    envvar="QTAGENT_NETLINK", show_default=True,
    help="Netlink backend: qtagent's own rtnetlink socket, or pyroute2.",
)  # fmt: skip
@click.option(
    "-v", "--verbose", count=True, envvar="QTAGENT_VERBOSE",
    help="-v info, -vv debug (every kernel effect as its shell command).",
)  # fmt: skip
@click.pass_context
def cli(
    ctx: click.Context,
    as_json: bool,
    sysfs_root: Path,
    db_path: Path,
    libvirt_uri: str,
    netlink: str,
    verbose: int,
) -> None:
    """qtagent: SR-IOV VFs from sysfs to running VMs.

    A PF is named by its PCI address (0000:41:00.0), its netdevsim device
    (netdevsim1) or its interface name; a VF by its PF and index.
    """
    # A caller that embeds the CLI (the unit tests, with their fake host) may hand in
    # its own HostContext as click's ``obj``: it is used instead of one opened from the
    # options, and closed at the end like one.
    given = ctx.obj if isinstance(ctx.obj, HostContext) else None
    level = logging.WARNING - 10 * min(verbose, 2)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(VisibleFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    ctx.obj = Options(json=as_json)
    paths = HostPaths(
        sysfs_root=sysfs_root,
        db_path=db_path,
        libvirt_uri=libvirt_uri,
        netlink="pyroute2" if netlink == "pyroute2" else "rtnl",
    )
    ctx.meta["host"] = ctx.with_resource(given if given is not None else HostContext(paths))


cli.add_command(pf)
cli.add_command(vf)
cli.add_command(vm)
cli.add_command(apply_cmd)
cli.add_command(lab)


def main() -> None:
    cli()
