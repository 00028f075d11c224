"""The tiny guest's boot files and console parsing (no VM: tests/lab/test_tinyguest_lab.py)."""

from __future__ import annotations

import dataclasses
import gzip
import stat
from pathlib import Path

import pytest

from qtagent.errors import LabError
from qtagent.lab import tinyguest
from qtagent.virt.domain_xml import safe_parse

RELEASE = "6.12.99+deb12-amd64"


def unpack(archive: bytes) -> dict[str, tuple[int, bytes]]:
    """newc cpio -> {name: (mode, data)}, checking the format as the kernel reads it."""
    raw = gzip.decompress(archive)
    entries: dict[str, tuple[int, bytes]] = {}
    at = 0
    while True:
        assert raw[at : at + 6] == b"070701"
        fields = [int(raw[at + 6 + 8 * i : at + 14 + 8 * i], 16) for i in range(13)]
        mode, size, namesize = fields[1], fields[6], fields[11]
        name_at = at + 110
        name = raw[name_at : name_at + namesize - 1].decode()
        data_at = name_at + namesize + (-(110 + namesize) % 4)
        if name == "TRAILER!!!":
            return entries
        entries[name] = (mode, raw[data_at : data_at + size])
        at = data_at + size + (-size % 4)


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    cache = tmp_path / "cache"
    (cache / RELEASE).mkdir(parents=True)
    (cache / "kernel-release").write_text(RELEASE + "\n")
    (cache / RELEASE / "tiny-bzImage").write_bytes(b"kernel")
    (cache / RELEASE / "tiny-init").write_bytes(b"\x7fELF init")
    return cache


def test_the_initramfs_holds_init_and_its_mount_points(tmp_path: Path) -> None:
    init = tmp_path / "init"
    init.write_bytes(b"\x7fELF" + bytes(range(7)))
    entries = unpack(tinyguest.build_initramfs(init))
    assert entries["init"] == (stat.S_IFREG | 0o755, init.read_bytes())
    for name in ("dev", "proc", "sys"):
        assert entries[name] == (stat.S_IFDIR | 0o755, b"")


def test_the_initramfs_bytes_are_reproducible(tmp_path: Path) -> None:
    init = tmp_path / "init"
    init.write_bytes(b"x" * 4097)
    assert tinyguest.build_initramfs(init) == tinyguest.build_initramfs(init)


def test_unchanged_initramfs_is_not_rewritten(tmp_path: Path) -> None:
    init = tmp_path / "init"
    init.write_bytes(b"init")
    target = tmp_path / "initrd.img"
    tinyguest.write_initramfs(target, init)
    before = target.stat()
    tinyguest.write_initramfs(target, init)
    assert target.stat().st_ino == before.st_ino
    assert not list(tmp_path.glob(".*.tmp"))


def test_prepare_gives_kernel_initrd_cmdline_and_machine(cache: Path, tmp_path: Path) -> None:
    boot = tinyguest.prepare(tmp_path / "out", cache=cache)
    assert boot.kernel == cache / RELEASE / "tiny-bzImage"
    assert boot.initrd == tmp_path / "out" / tinyguest.INITRD_NAME
    assert unpack(boot.initrd.read_bytes())["init"][1] == b"\x7fELF init"
    assert "console=ttyS0" in boot.cmdline
    assert boot.machine == "pc"


def test_the_domain_boots_the_tiny_guest_with_its_firmware(cache: Path, tmp_path: Path) -> None:
    boot = tinyguest.prepare(tmp_path / "out", cache=cache)
    boot = dataclasses.replace(boot, firmware=Path("/usr/share/qemu/qboot.rom"))
    root = safe_parse(tinyguest.domain_xml("vm-1", boot, tmp_path / "console.log"))
    assert root.get("type") == "qemu"
    os_el = root.find("os")
    assert os_el is not None
    assert [child.tag for child in os_el][:2] == ["type", "loader"]
    assert os_el.findtext("loader") == "/usr/share/qemu/qboot.rom"
    assert os_el.findtext("kernel") == str(boot.kernel)
    assert os_el.findtext("initrd") == str(boot.initrd)
    assert os_el.findtext("cmdline") == boot.cmdline
    type_el = os_el.find("type")
    assert type_el is not None and type_el.get("machine") == "pc"
    serial = root.find("devices/serial/source")
    assert serial is not None and serial.get("path") == str(tmp_path / "console.log")
    assert root.find("features/acpi") is not None  # ACPI hot-plug needs it


def test_without_qboot_the_domain_keeps_qemus_default_firmware(cache: Path, tmp_path: Path) -> None:
    boot = dataclasses.replace(tinyguest.prepare(tmp_path, cache=cache), firmware=None)
    assert safe_parse(tinyguest.domain_xml("vm-1", boot, tmp_path / "c")).find("os/loader") is None


def test_prepare_writes_into_the_labs_out_dir_by_default(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QTAGENT_LAB_OUT", str(tmp_path / "lab-out"))
    assert tinyguest.prepare(cache=cache).initrd.parent == tmp_path / "lab-out"


def test_prepare_without_an_out_dir_says_where_to_get_one(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("QTAGENT_LAB_OUT", raising=False)
    with pytest.raises(LabError, match="no directory"):
        tinyguest.prepare(cache=cache)


@pytest.mark.parametrize("missing", ["tiny-bzImage", "tiny-init"])
def test_a_missing_tiny_guest_points_to_setup(cache: Path, tmp_path: Path, missing: str) -> None:
    (cache / RELEASE / missing).unlink()
    with pytest.raises(LabError, match=missing) as caught:
        tinyguest.prepare(tmp_path, cache=cache)
    assert "make setup" in caught.value.hint


def test_an_unset_lab_points_to_setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QTAGENT_LAB_KERNEL_RELEASE", raising=False)
    with pytest.raises(LabError, match="not set up") as caught:
        tinyguest.prepare(tmp_path, cache=tmp_path / "nothing")
    assert "make setup" in caught.value.hint


CONSOLE = (
    "tinyguest: up 12.5\n"
    "tinyguest: pci 0000:00:00.0=0x8086:0x1237 0000:00:01.0=0x8086:0x7000\n"
    "tinyguest: pci 0000:00:00.0=0x8086:0x1237 0000:00:02.0=0x8086:0x10ca\n"
)


def test_console_parsing_reads_the_last_complete_report() -> None:
    assert tinyguest.boot_seconds(CONSOLE) == 12.5
    assert tinyguest.pci_devices(CONSOLE) == {
        "0000:00:00.0": "0x8086:0x1237",
        "0000:00:02.0": "0x8086:0x10ca",
    }
    # A line still being written is not a report yet.
    partial = tinyguest.pci_devices(CONSOLE + "tinyguest: pci 0000:00:00.0=0x80")
    assert partial is not None and "0000:00:02.0" in partial


def test_console_parsing_before_the_guest_is_up() -> None:
    assert tinyguest.pci_devices("") is None
    assert tinyguest.boot_seconds("[    0.000000] Linux version 6.12\ntinyguest: up 1") is None


def test_the_init_program_prints_what_the_parser_reads() -> None:
    source = Path(tinyguest.__file__).with_name("tinyguest-init.c").read_text()
    assert f'"{tinyguest.UP_PREFIX} "' in source
    assert f'"{tinyguest.PCI_PREFIX}"' in source
