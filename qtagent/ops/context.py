"""The edges one qtagent process talks to, created on first use and passed down.

Nothing here is a module global: the CLI (and later the daemon) builds one
HostContext from its options and hands it to the operations. The time source
(``clock``, ``sleep``) is an edge too: every bounded wait of the operations
(driver rebinds, VFs appearing, a guest letting go of a VF) reads it, so tests
run them against a fake clock, instantly.

Netlink always talks to this host's kernel, and it names links by the ifindex
read from sysfs. So real netlink is opened only when the sysfs root is this
host's /sys: over another tree (``--sysfs-root`` a copy or a fake) its ifindexes
would name whatever this host has under those numbers. There, VF settings are
not read (snapshots show them unknown) and setting them is refused, unless a
netlink edge is handed in (:meth:`HostContext.with_edges`, the tests' fakes).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal

from qtagent.effects.binding import PciBinder
from qtagent.errors import InvalidInput, PermissionDenied
from qtagent.journal.failpoints import Failpoints
from qtagent.journal.lock import HostLock, lock_path_for
from qtagent.model.host import HostSnapshot, PfInfo
from qtagent.netlink.api import VfNetlink
from qtagent.store.sqlite import DEFAULT_PATH
from qtagent.store.store import Store
from qtagent.sysfs.reader import SysfsReader
from qtagent.sysfs.writer import SysfsWriter
from qtagent.virt.api import VirtBackend

_log = logging.getLogger(__name__)

NetlinkKind = Literal["rtnl", "pyroute2"]
HOST_SYSFS = Path("/sys")


@dataclass(frozen=True, slots=True)
class HostPaths:
    """Where the host's interfaces are. Defaults are a real host's."""

    sysfs_root: Path = Path("/sys")
    dev_root: Path = Path("/dev")
    proc_root: Path = Path("/proc")
    db_path: Path = DEFAULT_PATH
    libvirt_uri: str = "qemu:///system"
    netlink: NetlinkKind = "rtnl"


@dataclass
class HostContext:
    """Lazily opened edges for one process. Close it (or use ``with``) when done.

    ``clock`` (seconds, monotonic) and ``sleep`` are the time source of every
    bounded wait. To hand in edges that are already open, use :meth:`with_edges`.
    """

    paths: HostPaths = field(default_factory=HostPaths)
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    failpoints: Failpoints = field(default_factory=Failpoints)
    _netlink: VfNetlink | None = None
    _store: Store | None = None
    _virt: VirtBackend | None = None
    _reader: SysfsReader | None = None
    _writer: SysfsWriter | None = None
    _lock: HostLock | None = None
    _settings_reader: SysfsReader = field(init=False, repr=False)

    @classmethod
    def with_edges(
        cls,
        paths: HostPaths,
        *,
        netlink: VfNetlink | None = None,
        virt: VirtBackend | None = None,
        writer: SysfsWriter | None = None,
        store: Store | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        failpoints: Failpoints | None = None,
    ) -> HostContext:
        """A context over edges the caller already holds (the fakes of tests, a
        daemon's shared connections); the context owns them from now on and closes
        them. Edges not given open lazily from ``paths`` as usual.

        ``writer`` must write the sysfs tree the reads come from (``paths.sysfs_root``):
        a write to one tree confirmed by reading another would prove nothing.
        """
        if writer is not None and writer.root != paths.sysfs_root:
            raise InvalidInput(
                f"the sysfs writer writes {writer.root}, but reads come from {paths.sysfs_root}",
                hint="give the writer the same root as HostPaths.sysfs_root",
            )
        return cls(
            paths, clock, sleep, failpoints or Failpoints(),
            _netlink=netlink, _store=store, _virt=virt, _writer=writer,
        )  # fmt: skip

    def __enter__(self) -> HostContext:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def netlink(self) -> VfNetlink:
        """The netlink edge handed in, else the host's own (opened on first use).

        Raises InvalidInput when the sysfs root is not this host's /sys and none was
        handed in: the ifindexes read there do not name this host's links.
        """
        if self._netlink is None:
            if not self.on_host_sysfs:
                raise InvalidInput(
                    f"VF settings go over netlink to this host's kernel, but the sysfs root "
                    f"{self.paths.sysfs_root} is not this host's {HOST_SYSFS}: its interface "
                    "indexes would name other links; nothing was sent",
                    hint=f"use --sysfs-root {HOST_SYSFS} (QTAGENT_SYSFS_ROOT) to read or set "
                    "VF settings; other trees show them as unknown",
                )
            if self.paths.netlink == "pyroute2":
                from qtagent.netlink.pyroute2_backend import Pyroute2VfNetlink

                self._netlink = Pyroute2VfNetlink()
            else:
                from qtagent.netlink.rtnl_backend import RtnlVfNetlink

                self._netlink = RtnlVfNetlink()
        return self._netlink

    @property
    def on_host_sysfs(self) -> bool:
        """True when the sysfs root is this host's /sys (the same directory, however it
        is named): only then do its ifindexes name the links netlink acts on."""
        try:
            return os.path.samefile(self.paths.sysfs_root, HOST_SYSFS)
        except OSError:
            return False

    @property
    def reads_vf_settings(self) -> bool:
        """Whether :meth:`snapshot` reads VF settings: over this host's /sys, or with a
        netlink edge handed in. When False they are unknown, not the defaults shown."""
        return self._netlink is not None or self.on_host_sysfs

    @property
    def store(self) -> Store:
        """The allocation database for reading and writing, created if missing."""
        if self._store is None:
            self._store = Store(self.paths.db_path)
        return self._store

    @property
    def store_for_reading(self) -> Store | None:
        """The allocation database for a command that only reads; None if there is
        none yet (reading creates no database: nothing is allocated).

        Opened read-write when qtagent's user may write it (so it is migrated and
        kept private as usual), else read-only (SQLite ``mode=ro``): a non-root
        reader, or a read-only file system, still sees who holds which VF. If it
        cannot even be read, PermissionDenied (exit 10) says so.
        """
        if self._store is None:
            path = self.paths.db_path
            if not os.path.lexists(path):
                return None
            try:
                self._store = Store(path)
            except PermissionDenied as err:
                _log.info("%s; opening it read-only", err.message)
                self._store = Store(path, readonly=True)
        return self._store

    @property
    def host_lock(self) -> HostLock:
        """The lock every change of this host runs under (beside the database)."""
        if self._lock is None:
            path = lock_path_for(self.paths.db_path)
            self._lock = HostLock(path, clock=self.clock, sleep=self.sleep)
        return self._lock

    @property
    def virt(self) -> VirtBackend:
        if self._virt is None:
            from qtagent.virt.libvirt_backend import LibvirtBackend

            self._virt = LibvirtBackend(self.paths.libvirt_uri)
        return self._virt

    @property
    def writer(self) -> SysfsWriter:
        if self._writer is None:
            self._writer = SysfsWriter(self._sysfs_root())
        return self._writer

    @property
    def binder(self) -> PciBinder:
        return PciBinder(self.writer, self.paths.dev_root, clock=self.clock, sleep=self.sleep)

    def snapshot(
        self, *, settings: bool = True, settings_of: frozenset[str] | None = None
    ) -> HostSnapshot:
        """The host now; VF settings are read over netlink only when asked for
        (opening netlink is the costly part of a read), only for the PFs named in
        ``settings_of`` when given, and only where netlink describes the tree read
        (see the module docstring): elsewhere they stay unknown."""
        if self._reader is None:
            root = self._sysfs_root()
            self._reader = SysfsReader(root)
            self._settings_reader = SysfsReader(root, pci_ids=self._reader.pci_ids)
        if not settings:
            return self._reader.snapshot()
        if not self.reads_vf_settings:
            _log.info(
                "VF settings not read: %s is not this host's %s, and netlink only "
                "describes this host", self.paths.sysfs_root, HOST_SYSFS,
            )  # fmt: skip
            return self._reader.snapshot()
        self._settings_reader.netlink = self.netlink
        return self._settings_reader.snapshot(settings_of=settings_of)

    def _sysfs_root(self) -> Path:
        """The sysfs root, refused if it is not a directory: the reader would show a
        missing root as a host without PFs, which is a different answer."""
        root = self.paths.sysfs_root
        if not root.is_dir():
            state = "is not a directory" if root.exists() else "does not exist"
            raise InvalidInput(
                f"the sysfs root {root} {state}",
                hint="give the directory sysfs is mounted on (--sysfs-root, QTAGENT_SYSFS_ROOT; "
                "/sys on a host), or mount it: mount -t sysfs sysfs /sys",
            )
        return root

    def pf(self, name: str, *, settings: bool = True) -> PfInfo:
        return self.snapshot(settings=settings).pf(name)

    def close(self) -> None:
        for edge in (self._netlink, self._store, self._virt):
            if edge is not None:
                edge.close()
        self._netlink = self._store = self._virt = None
