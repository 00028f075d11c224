"""The `qtagent` command: entry point, global options and error reporting."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any, Final, NoReturn

import click
from click.core import ParameterSource

from qtagent import __version__
from qtagent.cli.common import EnvTwinOption, NonEmptyPath, NonEmptyText
from qtagent.cli.host_cmds import apply_cmd, pf, vf
from qtagent.cli.lab import lab
from qtagent.cli.output import Options, VisibleFormatter, escape_echoes, shown, visible
from qtagent.cli.serve_cmd import serve_cmd
from qtagent.cli.status_cmd import status_cmd
from qtagent.cli.vm_cmds import vm
from qtagent.errors import InvalidInput, QtagentError, from_os_error
from qtagent.journal.failpoints import Failpoints
from qtagent.ops.context import HostContext, HostPaths
from qtagent.store.sqlite import DEFAULT_PATH


class QtagentGroup(click.Group):
    """Turns every QtagentError into its diagnostics on stderr and its exit code.

    Everything printed about an error is escaped: click's own usage errors, and
    every value the user gave (arguments and QTAGENT_* variables) wherever a
    message echoes it, so that no value can drive the terminal or forge a line.
    An OSError no layer below turned into a QtagentError (a path the database
    cannot be made at, say) is reported the same way, not as a traceback.
    """

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        given = list(args)
        try:
            ctx = super().make_context(info_name, args, parent=parent, **extra)
        except click.ClickException as err:
            raise _escaped(err, _user_values(given)) from None
        ctx.meta[_ARGS] = given
        return ctx

    def invoke(self, ctx: click.Context) -> object:
        try:
            return super().invoke(ctx)
        except click.ClickException as err:
            raise _escaped(err, _user_values(ctx.meta.get(_ARGS, []))) from None
        except QtagentError as err:
            _fail(ctx, err)
        except BrokenPipeError:
            raise  # stdout closed early (`qtagent vf list | head`): click ends quietly
        except OSError as err:
            _fail(ctx, _unexpected_os_error(err))


_ARGS: Final = "qtagent.args"


def _fail(ctx: click.Context, err: QtagentError) -> NoReturn:
    text = escape_echoes(err.diagnostics(), _user_values(ctx.meta.get(_ARGS, [])))
    click.echo(f"qtagent: error: {visible(text, keep_newlines=True)}", err=True)
    sys.exit(err.exit_code)


def _escaped(err: click.ClickException, values: list[str]) -> click.ClickException:
    """``err`` (one of click's own errors) with the user's values escaped; its exit
    code stays: 2 for a usage error, else 1."""
    text = visible(escape_echoes(err.format_message(), values), keep_newlines=True)
    if isinstance(err, click.UsageError):
        return click.UsageError(text, err.ctx)
    return click.ClickException(text)


def _user_values(args: list[str]) -> list[str]:
    """What the user typed: each argument (and an option's value after ``=``), and
    the value of each QTAGENT_* variable."""
    values: list[str] = []
    for arg in args:
        values += [arg, arg.partition("=")[2]] if arg.startswith("--") else [arg]
    values += [v for k, v in os.environ.items() if k.startswith("QTAGENT_")]
    return values


def _unexpected_os_error(err: OSError) -> QtagentError:
    where = err.filename if err.filename is not None else "a file"
    return from_os_error(
        err,
        f"using {shown(where)}",
        hint="check the paths given (--db, --sysfs-root, FILE) and their directories",
    )


def _check_sysfs_root(root: Path) -> None:
    """Refuse a --sysfs-root (or QTAGENT_SYSFS_ROOT) that is not a sysfs tree: every
    sysfs has the directory ``class/net``, and one with PCI ``bus/pci/devices``; ``/``
    or ``/proc`` (whose ``bus/pci/devices`` is a file) has neither, and read as sysfs
    would look like a host without PFs."""
    shown_root = shown(root)
    if not root.is_dir():
        state = "is not a directory" if root.exists() else "does not exist"
        raise InvalidInput(f"the sysfs root {shown_root} {state}", hint=_SYSFS_HINT)
    if not any((root / sub).is_dir() for sub in _SYSFS_MARKS):
        raise InvalidInput(
            f"the sysfs root {shown_root} is not a sysfs tree: it has no "
            + " and no ".join(_SYSFS_MARKS),
            hint=_SYSFS_HINT,
        )


_SYSFS_MARKS: Final = ("bus/pci/devices", "class/net")
_SYSFS_HINT: Final = (
    "give the directory sysfs is mounted on (--sysfs-root, QTAGENT_SYSFS_ROOT; "
    "/sys on a host), or mount it: mount -t sysfs sysfs /sys"
)


@click.group(cls=QtagentGroup, context_settings={"auto_envvar_prefix": "QTAGENT"})
@click.version_option(__version__, prog_name="qtagent")
@click.option("--json", "as_json", is_flag=True, envvar="QTAGENT_JSON", help="Print JSON.")
@click.option(
    "--sysfs-root", type=NonEmptyPath("the sysfs root", file_okay=False), default=Path("/sys"),
    envvar="QTAGENT_SYSFS_ROOT", show_default=True, cls=EnvTwinOption,
    help="Where sysfs is mounted (a directory with bus/pci/devices or class/net).",
)  # fmt: skip
@click.option(
    "--db", "db_path", type=NonEmptyPath("the database path", dir_okay=False),
    default=DEFAULT_PATH, envvar="QTAGENT_DB", show_default=True, cls=EnvTwinOption,
    help="The allocation database (SQLite).",
)  # fmt: skip
@click.option(
    "--libvirt-uri", type=NonEmptyText("the libvirt URI"), default="qemu:///system",
    envvar="QTAGENT_LIBVIRT_URI", show_default=True, cls=EnvTwinOption,
    help="The libvirt connection for VM commands.",
)  # fmt: skip
@click.option(
    "--netlink", type=click.Choice(["rtnl", "pyroute2"]), default="rtnl",
    envvar="QTAGENT_NETLINK", show_default=True, cls=EnvTwinOption,
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
    if given is None and ctx.get_parameter_source("sysfs_root") is not ParameterSource.DEFAULT:
        _check_sysfs_root(sysfs_root)
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
    # QTAGENT_FAILPOINT arms a fault-injection point (qtagent.journal.failpoints).
    opened = HostContext(paths, failpoints=Failpoints.from_env())
    ctx.meta["host"] = ctx.with_resource(given if given is not None else opened)


cli.add_command(pf)
cli.add_command(vf)
cli.add_command(vm)
cli.add_command(apply_cmd)
cli.add_command(lab)
cli.add_command(status_cmd)
cli.add_command(serve_cmd)


def main() -> None:
    cli()
