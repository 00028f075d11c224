"""The tiny guest: a VM OS for inside the lab that boots in seconds, not minutes.

Hot-unplug of a PCI device completes only when a guest OS answers the ACPI
eject request, so the lab's VMs need a real OS. Under TCG inside TCG every
instruction run for the first time costs twice, so this one is as small as it
gets: a Linux kernel from ``make tinyconfig`` plus what ACPI PCI hot-plug needs,
and a freestanding /init (``tinyguest-init.c``), both built by
``scripts/build-tiny-kernel.sh`` into the lab cache. The init prints
``tinyguest: up <seconds since kernel start>`` and then the PCI devices it sees
(``tinyguest: pci <address>=<vendor>:<device> ...``, sysfs spelling
``0x8086:0x10ca``) at start and whenever they change; the serial console is a
file that tests read with :func:`pci_devices`.

:func:`prepare` gives what a libvirt domain needs to boot it. The initramfs is
written as a newc cpio archive by this module: no cpio tool, no root, the same
bytes for the same init.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Final

from qtagent.errors import LabError
from qtagent.lab.runner import SETUP_HINT, lab_cache
from qtagent.virt.domain_xml import DomainSpec
from qtagent.virt.domain_xml import domain_xml as plain_domain_xml

KERNEL_NAME: Final = "tiny-bzImage"
INIT_NAME: Final = "tiny-init"
INITRD_NAME: Final = "tinyguest-initrd.img"
# i440fx: ACPI hot-plug straight on pci.0, no root ports to declare, fewer devices
# to probe than q35 (docs/lab.md has the measurements).
MACHINE: Final = "pc"
# qboot (QEMU's minimal firmware, package qemu-system-data) instead of SeaBIOS:
# about 25 s less per boot under TCG inside TCG.
QBOOT: Final = Path("/usr/share/qemu/qboot.rom")
# no_timer_check: the IO-APIC timer check busy-waits and misjudges under nested TCG;
# tsc=reliable: no clocksource watchdog.
CMDLINE: Final = "console=ttyS0 quiet panic=-1 no_timer_check tsc=reliable"
UP_PREFIX: Final = "tinyguest: up"
PCI_PREFIX: Final = "tinyguest: pci"

_DIRS: Final = ("dev", "proc", "sys")


@dataclass(frozen=True, slots=True)
class TinyGuestBoot:
    """What a domain's ``<os>`` needs: direct kernel boot on ``machine``, with
    ``firmware`` as its ROM (None: QEMU's default, SeaBIOS)."""

    kernel: Path
    initrd: Path
    cmdline: str
    machine: str
    firmware: Path | None


def tiny_dir(cache: Path | None = None, release: str | None = None) -> Path:
    """``<lab cache>/<lab kernel release>``, where setup puts the tiny guest."""
    cache = cache if cache is not None else lab_cache()
    if release is None:
        release = os.environ.get("QTAGENT_LAB_KERNEL_RELEASE")
    if release is None:
        try:
            release = (cache / "kernel-release").read_text().strip()
        except OSError:
            raise LabError(
                f"the lab is not set up: {cache / 'kernel-release'} is missing", hint=SETUP_HINT
            ) from None
    return cache / release


def _built(path: Path) -> Path:
    if not path.is_file():
        raise LabError(
            f"the tiny guest's {path.name} is missing ({path})",
            hint=f"{SETUP_HINT} (it builds the tiny guest kernel in a few minutes)",
        )
    return path


def prepare(out_dir: Path | None = None, *, cache: Path | None = None) -> TinyGuestBoot:
    """Write the initramfs into ``out_dir`` (default: ``$QTAGENT_LAB_OUT``) and return
    the kernel, initrd, command line and machine type for a libvirt domain.

    Every VM may share the returned files: the kernel is read-only in the cache and
    the initramfs is rewritten only when its bytes change.
    """
    if out_dir is None:
        env = os.environ.get("QTAGENT_LAB_OUT")
        if not env:
            raise LabError(
                "no directory for the tiny guest's initramfs",
                hint="pass out_dir, or run inside the lab (it sets QTAGENT_LAB_OUT)",
            )
        out_dir = Path(env)
    where = tiny_dir(cache)
    kernel = _built(where / KERNEL_NAME)
    out_dir.mkdir(parents=True, exist_ok=True)
    initrd = write_initramfs(out_dir / INITRD_NAME, _built(where / INIT_NAME))
    return TinyGuestBoot(kernel, initrd, CMDLINE, MACHINE, QBOOT if QBOOT.is_file() else None)


def domain_xml(name: str, boot: TinyGuestBoot, console: Path, *, memory_mib: int = 64) -> str:
    """A libvirt domain (type qemu: TCG) booting ``boot``, its serial console in the
    file ``console``."""
    spec = DomainSpec(
        name=name,
        memory_mib=memory_mib,
        machine=boot.machine,
        kernel=PurePosixPath(boot.kernel),
        initrd=PurePosixPath(boot.initrd),
        cmdline=boot.cmdline,
        serial_log=PurePosixPath(console),
        firmware_rom=PurePosixPath(boot.firmware) if boot.firmware is not None else None,
    )
    return plain_domain_xml(spec)


# ------------------------------------------------------------------ console


def boot_seconds(console: str) -> float | None:
    """Seconds from kernel start to init, as the guest printed it; None before."""
    for line in console.split("\n")[:-1]:
        if line.startswith(UP_PREFIX):
            try:
                return float(line[len(UP_PREFIX) :].strip())
            except ValueError:
                return None
    return None


def pci_devices(console: str) -> dict[str, str] | None:
    """The PCI devices of the last complete ``tinyguest: pci`` line, as
    ``{address: "0x8086:0x10ca"}``; None while there is none."""
    lines = [line for line in console.split("\n")[:-1] if line.startswith(PCI_PREFIX)]
    if not lines:
        return None
    found: dict[str, str] = {}
    for item in lines[-1][len(PCI_PREFIX) :].split():
        address, _, ids = item.partition("=")
        found[address] = ids
    return found


# ---------------------------------------------------------------- initramfs


def _entry(out: io.BytesIO, ino: int, name: str, mode: int, data: bytes = b"") -> None:
    """Append one newc header + name + data, each padded to 4 bytes."""
    encoded = name.encode() + b"\0"
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(encoded), 0]
    header = b"070701" + b"".join(f"{value:08x}".encode() for value in fields)
    out.write(header + encoded)
    out.write(b"\0" * (-(len(header) + len(encoded)) % 4))
    out.write(data)
    out.write(b"\0" * (-len(data) % 4))


def build_initramfs(init: Path) -> bytes:
    """The gzip-compressed initramfs: ``init`` as /init and empty mount points.
    (/dev/console comes from the kernel's built-in initramfs.)"""
    out = io.BytesIO()
    for ino, name in enumerate(_DIRS, start=1):
        _entry(out, ino, name, stat.S_IFDIR | 0o755)
    _entry(out, len(_DIRS) + 1, "init", stat.S_IFREG | 0o755, init.read_bytes())
    _entry(out, 0, "TRAILER!!!", 0)
    return gzip.compress(out.getvalue(), compresslevel=9, mtime=0)


def write_initramfs(target: Path, init: Path | None = None) -> Path:
    """Write the initramfs to ``target`` and return it. ``init`` defaults to the
    one setup built. Atomic, and unchanged bytes are not rewritten, so VMs (and
    concurrent writers) may share one file."""
    data = build_initramfs(init if init is not None else _built(tiny_dir() / INIT_NAME))
    try:
        if target.read_bytes() == data:
            return target
    except OSError:
        pass
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(target)
    return target
