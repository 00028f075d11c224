"""The real SysfsWriter on a plain tree of files: it writes only regular files, never
through a final symlink, and never blocks."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from qtagent.errors import KernelError, MalformedAttribute
from qtagent.model.types import PciAddress
from qtagent.sysfs.writer import SysfsWriter

VF = PciAddress.parse("0000:41:10.0")


@pytest.fixture
def writer(tmp_path: Path) -> SysfsWriter:
    (tmp_path / "sys/bus/pci/devices" / str(VF)).mkdir(parents=True)
    return SysfsWriter(tmp_path / "sys")


def override_path(writer: SysfsWriter) -> Path:
    return writer.pci_device(VF) / "driver_override"


@contextmanager
def fifo_reader(path: Path) -> Iterator[int]:
    """A FIFO at ``path`` with a reader, so that opening it for writing would succeed."""
    os.mkfifo(path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        yield fd
    finally:
        os.close(fd)


def test_a_regular_file_is_written_in_one_write(writer: SysfsWriter) -> None:
    override_path(writer).write_text("(null)\n")
    writer.set_driver_override(VF, "vfio-pci")
    assert override_path(writer).read_text() == "vfio-pci\n"


def test_a_symlink_in_place_of_the_attribute_is_not_followed(
    writer: SysfsWriter, tmp_path: Path
) -> None:
    """A planted link used to redirect the write to any file the agent may write."""
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    override_path(writer).symlink_to(victim)
    with pytest.raises(KernelError) as raised:
        writer.set_driver_override(VF, "vfio-pci")
    assert raised.value.errno == errno.ELOOP
    assert "is a symlink, not a sysfs attribute" in raised.value.hint
    assert victim.read_text() == "precious\n"


def test_a_fifo_in_place_of_the_attribute_is_refused_unopened(writer: SysfsWriter) -> None:
    with fifo_reader(override_path(writer)) as reader:
        with pytest.raises(MalformedAttribute, match="is not a regular file, so not a sysfs"):
            writer.set_driver_override(VF, "vfio-pci")
        assert os.read(reader, 64) == b""  # nothing was written into it


def test_a_fifo_without_a_reader_does_not_block(writer: SysfsWriter) -> None:
    """O_WRONLY on a FIFO without a reader blocks forever; the writer must not."""
    os.mkfifo(override_path(writer))
    with pytest.raises(MalformedAttribute):
        writer.set_driver_override(VF, "vfio-pci")


def test_a_directory_in_place_of_the_attribute_is_refused(writer: SysfsWriter) -> None:
    override_path(writer).mkdir()
    with pytest.raises(MalformedAttribute, match=r"driver_override refused: .* is not a regular"):
        writer.set_driver_override(VF, "vfio-pci")


def test_a_missing_attribute_is_still_not_found(writer: SysfsWriter) -> None:
    from qtagent.errors import NotFound

    with pytest.raises(NotFound, match="driver_override failed"):
        writer.set_driver_override(VF, "vfio-pci")
