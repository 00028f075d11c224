"""Move a VF between its host driver and vfio-pci (FIELD-CASES C7, C9).

To vfio-pci: check the IOMMU group is viable and that vfio-pci is loaded (else
the VF would leave its host driver for nothing), remember the original driver
(through the caller's ``remember`` callback, before the first effect), set
driver_override, unbind, drivers_probe, then confirm the driver link and
/dev/vfio/<group>. Any failing step rolls back to the original driver: a VF
is never left without a driver. Back to the host: clear driver_override,
unbind, drivers_probe, confirm the original driver is back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from qtagent.errors import KernelError, QtagentError, Timeout, Unsupported
from qtagent.model.host import VfInfo
from qtagent.model.types import PciAddress
from qtagent.plan.binding import check_vfio_viable
from qtagent.sysfs.pci import driver_loaded, driver_of, iommu_group_of, pci_driver_dir
from qtagent.sysfs.writer import SysfsWriter

log = logging.getLogger(__name__)

VFIO = "vfio-pci"


@dataclass(frozen=True, slots=True)
class BindResult:
    address: PciAddress
    before: str | None
    after: str | None
    changed: bool


@dataclass(frozen=True, slots=True)
class PciBinder:
    """Binds PCI functions on one host: a sysfs writer, and /dev for the VFIO nodes."""

    writer: SysfsWriter
    dev_root: Path = Path("/dev")
    confirm_timeout_s: float = 5.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep

    @property
    def sysfs(self) -> Path:
        return self.writer.root

    def to_vfio(self, vf: VfInfo, remember: Callable[[str | None], None]) -> BindResult:
        """Bind ``vf`` to vfio-pci. ``remember(original_driver)`` must make it durable."""
        check_vfio_viable(vf)
        address = _pci(vf)
        original = driver_of(self.sysfs, address)
        if original == VFIO:
            return BindResult(address, original, original, changed=False)
        self._require_vfio_pci(vf)
        remember(original)
        try:
            self.writer.set_driver_override(address, VFIO)
            self._unbind(address)
            self.writer.probe(address)
            self._confirm(address, VFIO)
            group = iommu_group_of(self.sysfs, address)
            node = self.dev_root / "vfio" / str(group)
            if group is None or not self._wait(node.exists):
                raise KernelError(
                    f"{vf.id} ({address}) is on vfio-pci but {node} did not appear",
                    hint="check that the IOMMU is enabled and vfio_iommu_type1 is loaded",
                )
        except QtagentError as err:
            log.warning(
                "binding %s to vfio-pci failed (%s); rolling back to %s", address, err, original
            )
            self._rollback(address, original)
            raise
        return BindResult(address, original, VFIO, changed=True)

    def to_host(self, vf: VfInfo, original: str | None) -> BindResult:
        """Give ``vf`` back to its original host driver (idempotent)."""
        address = _pci(vf)
        before = driver_of(self.sysfs, address)
        if before == original and before != VFIO:
            self.writer.set_driver_override(address, None)
            return BindResult(address, before, before, changed=False)
        self.writer.set_driver_override(address, None)
        self._unbind(address)
        self.writer.probe(address)
        if original is not None:
            self._confirm(address, original)
        return BindResult(address, before, driver_of(self.sysfs, address), changed=True)

    def probe_host_driver(self, vf: VfInfo) -> BindResult:
        """Give a VF left without a driver one of the host's (whichever drivers_probe
        finds): a repair of an external unbind. A VF with a driver is left alone."""
        address = _pci(vf)
        before = driver_of(self.sysfs, address)
        if before is not None:
            return BindResult(address, before, before, changed=False)
        self.writer.set_driver_override(address, None)
        self.writer.probe(address)
        # A probe asked for while the unbind that caused this repair is still being
        # torn down can come to nothing (lab: igbvf, 1 in 20); asking again is harmless
        # (drivers_probe leaves a bound device alone).
        bound = lambda: driver_of(self.sysfs, address) is not None  # noqa: E731
        if not self._wait(bound, nudge=lambda: self.writer.probe(address)):
            raise Timeout(
                f"{address} has no driver {self.confirm_timeout_s:.0f} s after drivers_probe",
                hint="check `dmesg`, the PF's sriov_drivers_autoprobe and that the VF "
                "driver module is loaded",
            )
        return BindResult(address, before, driver_of(self.sysfs, address), changed=True)

    def _require_vfio_pci(self, vf: VfInfo) -> None:
        """Refuse before any effect when vfio-pci is not loaded: drivers_probe would
        find no driver, and the VF would be taken from its host driver for nothing."""
        if not driver_loaded(self.sysfs, VFIO):
            raise Unsupported(
                f"cannot bind {vf.id} to vfio-pci: the vfio-pci driver is not loaded "
                f"({pci_driver_dir(self.sysfs, VFIO)} does not exist); nothing was changed",
                hint="load it (modprobe vfio-pci), then retry",
            )

    def _rollback(self, address: PciAddress, original: str | None) -> None:
        try:
            self.writer.set_driver_override(address, None)
            if driver_of(self.sysfs, address) != original:
                self.writer.unbind(address)
                self.writer.probe(address)
            if original is not None:
                self._confirm(address, original)
        except QtagentError:
            log.exception("rollback of %s to %s failed", address, original)

    def _unbind(self, address: PciAddress) -> None:
        """Unbind, first waiting for the driver's unbind file: right after the first VFs
        of a boot appear, igbvf's /sys/bus/pci/drivers/igbvf/unbind is missing for
        seconds (measured in the lab)."""
        driver_dir = self.writer.pci_device(address) / "driver"
        self._wait(lambda: not driver_dir.exists() or (driver_dir / "unbind").exists())
        self.writer.unbind(address)

    def _confirm(self, address: PciAddress, driver: str) -> None:
        if not self._wait(lambda: driver_of(self.sysfs, address) == driver):
            now = driver_of(self.sysfs, address)
            raise Timeout(
                f"{address} is on driver {now or 'none'}, not {driver}, "
                f"{self.confirm_timeout_s:.0f} s after drivers_probe",
                hint=f"check `dmesg` and that the {driver} module is loaded",
            )

    def _wait(self, done: Callable[[], bool], nudge: Callable[[], None] | None = None) -> bool:
        """Poll ``done`` until the confirm timeout; ``nudge`` is called once a second."""
        start = self.clock()
        deadline = start + self.confirm_timeout_s
        nudged = start
        while not done():
            now = self.clock()
            if now >= deadline:
                return False
            if nudge is not None and now - nudged >= 1.0:
                nudge()
                nudged = now
            self.sleep(0.05)
        return True


def _pci(vf: VfInfo) -> PciAddress:
    if vf.address is None:
        raise Unsupported(f"{vf.id} is not a PCI function; it has no driver to bind")
    return vf.address
