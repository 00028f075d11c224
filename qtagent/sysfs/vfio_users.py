"""Which processes hold a VFIO group open: QEMU while a VM has the VF, or a leftover.

Unbinding a VF from vfio-pci blocks in the kernel while its group is open, so a
release looks first. Equivalent to::

    fuser /dev/vfio/$group        # or: ls -l /proc/*/fd | grep /dev/vfio/$group
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Final

_log = logging.getLogger(__name__)

_COMM_MAX: Final = 64


def vfio_group_holders(proc_root: Path, node: Path) -> tuple[tuple[int, str], ...]:
    """(pid, command name) of every process with ``node`` (``/dev/vfio/N``) open.

    Processes that vanish or whose descriptors this user may not read are skipped."""
    wanted = os.fspath(node)
    holders = []
    try:
        entries = os.listdir(proc_root)
    except OSError as e:
        _log.debug("cannot list %s: %s", proc_root, e)
        return ()
    for name in entries:
        if not name.isdigit():
            continue
        fd_dir = proc_root / name / "fd"
        try:
            targets = [os.readlink(fd_dir / fd) for fd in os.listdir(fd_dir)]
        except OSError:
            continue
        if wanted in targets:
            holders.append((int(name), _comm(proc_root / name / "comm")))
    return tuple(sorted(holders))


def _comm(path: Path) -> str:
    try:
        text = path.read_text(errors="replace").strip()[:_COMM_MAX]
    except OSError:
        return "?"
    return "".join(c if c.isprintable() else "?" for c in text) or "?"
