"""`qtagent serve`: the daemon. Run by systemd (systemd/qtagent.service), as root."""

from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path

import click

from qtagent.cli.common import EnvTwinOption, NonEmptyPath, Seconds, host

DEFAULT_CONFIG = Path("/etc/qtagent/host.toml")


@click.command("serve")
@click.option(
    "--config", "config_path", type=NonEmptyPath("the host config", dir_okay=False),
    default=DEFAULT_CONFIG, envvar="QTAGENT_CONFIG", show_default=True, cls=EnvTwinOption,
    help="The host config (TOML) the daemon keeps the host at.",
)  # fmt: skip
@click.option(
    "--tick", "tick_s", type=Seconds(0.1, 86400), default=30.0, envvar="QTAGENT_TICK",
    show_default=True, cls=EnvTwinOption,
    help="Seconds (0.1 to 86400) between two checks of the whole host, whatever events came.",
)  # fmt: skip
def serve_cmd(config_path: Path, tick_s: float) -> None:
    """Keep the host at its config: follow udev and netlink link events, reconcile.

    Speaks sd_notify (Type=notify): READY once the first reconcile is done, STATUS
    after each, WATCHDOG when WatchdogSec= is set. SIGHUP reloads the config;
    SIGTERM or SIGINT stops.
    """
    from qtagent.daemon.agent import make_handler
    from qtagent.daemon.loop import DaemonLoop
    from qtagent.daemon.notify import Notifier
    from qtagent.daemon.rtnl_monitor import RtnlMonitor
    from qtagent.daemon.signals import SignalWakeup
    from qtagent.daemon.udev_source import UdevSource

    ctx = host()
    notifier = Notifier.from_env(os.environ)
    with ExitStack() as stack:
        # The sources open before start(): what changes during the first reconcile
        # is queued and looked at after it.
        udev = UdevSource()
        stack.callback(udev.close)
        rtnl = stack.enter_context(RtnlMonitor())
        stack.callback(notifier.close)
        signals = stack.enter_context(SignalWakeup())
        handler = make_handler(ctx, config_path)
        code = DaemonLoop(handler, notifier, [udev, rtnl], signals, tick_s=tick_s).run()
    if code:
        raise SystemExit(code)
