"""Every write qtagent makes to sysfs, one method each (the kernel edge).

Each method's docstring is the shell command it equals; each write is logged at
debug level as that command. OSErrors become qtagent errors keeping the errno.
Only regular files are written, never through a final symlink, never blocking
(:func:`open_attribute`).
The root is injected (``/sys`` on a host) so that tests can point it elsewhere.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path
from typing import Final

from qtagent.errors import MalformedAttribute, from_os_error
from qtagent.model.types import PciAddress
from qtagent.sysfs import attrs

log = logging.getLogger(__name__)

NOT_SYSFS_HINT: Final = (
    "something other than the kernel made this path, or the sysfs root is not sysfs "
    "(--sysfs-root, QTAGENT_SYSFS_ROOT)"
)


class SysfsWriter:
    """Writes to one sysfs tree. Counts its writes (``writes``) for tests and status."""

    def __init__(self, root: Path = Path("/sys")) -> None:
        self.root = root
        self.writes = 0

    def pci_device(self, address: PciAddress) -> Path:
        return self.root / "bus" / "pci" / "devices" / str(address)

    def num_vfs_path(self, pf_name: str) -> Path:
        """The sriov_numvfs file of a PCI PF (by address) or a netdevsim device (by name)."""
        if pf_name.startswith("netdevsim"):
            return self.root / "bus" / "netdevsim" / "devices" / pf_name / "sriov_numvfs"
        return self.pci_device(PciAddress.parse(pf_name)) / "sriov_numvfs"

    def write_num_vfs(self, pf_name: str, count: int) -> None:
        """echo $count > /sys/bus/pci/devices/$pf/sriov_numvfs"""
        path = self.num_vfs_path(pf_name)
        self._write(path, f"{count}\n", hint=numvfs_hint)

    def set_driver_override(self, address: PciAddress, driver: str | None) -> None:
        """echo $driver > /sys/bus/pci/devices/$vf/driver_override (empty clears it)"""
        self._write(self.pci_device(address) / "driver_override", f"{driver or ''}\n")

    def unbind(self, address: PciAddress) -> None:
        """echo $vf > /sys/bus/pci/devices/$vf/driver/unbind (a no-op when unbound)"""
        unbind = self.pci_device(address) / "driver" / "unbind"
        if not unbind.parent.exists():
            return
        self._write(unbind, str(address))

    def probe(self, address: PciAddress) -> None:
        """echo $vf > /sys/bus/pci/drivers_probe"""
        self._write(self.root / "bus" / "pci" / "drivers_probe", str(address))

    def reset(self, address: PciAddress) -> None:
        """echo 1 > /sys/bus/pci/devices/$vf/reset (function-level reset)"""
        self._write(self.pci_device(address) / "reset", "1\n")

    def _write(self, path: Path, text: str, hint: object = None) -> None:
        shown = text.strip() or "''"
        command = f"echo {shown} > {path}"
        log.debug("%s", command)
        self.writes += 1
        try:
            fd = open_attribute(path, command)
            try:
                # One write(2) call: sysfs store handlers see exactly this buffer.
                os.write(fd, text.encode())
            finally:
                os.close(fd)
        except OSError as err:
            explain = hint(err) if callable(hint) else ""
            if err.errno == errno.ELOOP:
                explain = f"{path} is a symlink, not a sysfs attribute; {NOT_SYSFS_HINT}"
            raise from_os_error(err, command, hint=explain) from err


def open_attribute(path: Path, command: str) -> int:
    """A descriptor of the sysfs attribute at ``path``, open for writing.

    Sysfs attributes are regular files, so anything else is refused
    (MalformedAttribute): a device node before it is opened (opening one acts on
    it), a symlink by O_NOFOLLOW (ELOOP), a FIFO without blocking (O_NONBLOCK:
    ENXIO without a reader, refused after the open with one). O_NONBLOCK changes
    nothing for a sysfs or regular file. Links above the last component are
    followed: sysfs paths go through them (``bus/pci/devices/$vf/driver/unbind``).
    """
    _refuse_non_file(path, os.lstat(path).st_mode, command)
    fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        _refuse_non_file(path, os.fstat(fd).st_mode, command)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _refuse_non_file(path: Path, mode: int, command: str) -> None:
    if stat.S_ISREG(mode) or stat.S_ISLNK(mode):  # a link: O_NOFOLLOW answers ELOOP
        return
    raise MalformedAttribute(
        f"{command} refused: {path} is not a regular file, so not a sysfs attribute",
        hint=NOT_SYSFS_HINT,
    )


def numvfs_hint(err: OSError) -> str:
    hints = {
        errno.ERANGE: "the count is above sriov_totalvfs",
        errno.ENOENT: "the PF has no driver bound, or the driver does not support SR-IOV; "
        "bind its driver and retry",
        errno.ENOSPC: "the driver ran out of resources (interrupt vectors or queues); "
        "ask for fewer VFs, or free resources and retry later",
        errno.ENOMEM: "the driver could not allocate that many VFs (netdevsim: above max_vfs)",
        errno.EBUSY: "VFs exist already: go through 0 first (this destroys every VF)",
    }
    return hints.get(err.errno or 0, "")


def read_text(path: Path) -> str | None:
    """cat $path, or None if it cannot be read (vanished, EINVAL on a down link, ...);
    a FIFO does not block (:func:`qtagent.sysfs.attrs.read_text`)."""
    return attrs.read_text(os.fspath(path))
