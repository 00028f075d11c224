"""Uevent properties as the kernel and udevd write them, turned into event values."""

from __future__ import annotations

import pytest

from qtagent.daemon.events import UdevEvent, valid_ifname

PF = "/devices/pci0000:00/0000:00:02.0/0000:01:00.0"


def test_a_pci_bind_uevent() -> None:
    props = {
        "ACTION": "bind", "DEVPATH": PF, "SUBSYSTEM": "pci", "DRIVER": "igb",
        "PCI_SLOT_NAME": "0000:01:00.0", "SEQNUM": "4242",
    }  # fmt: skip
    assert UdevEvent.from_properties(props) == UdevEvent(
        "pci", "bind", PF, "0000:01:00.0", None, "igb"
    )


def test_a_pci_uevent_without_slot_name_is_named_by_its_devpath() -> None:
    props = {"ACTION": "remove", "DEVPATH": PF, "SUBSYSTEM": "pci"}
    event = UdevEvent.from_properties(props)
    assert event is not None
    assert (event.name, event.driver) == ("0000:01:00.0", None)


def test_a_net_add_uevent() -> None:
    props = {
        "ACTION": "add", "DEVPATH": f"{PF}/net/enp1s0", "SUBSYSTEM": "net",
        "INTERFACE": "enp1s0", "IFINDEX": "7",
    }  # fmt: skip
    assert UdevEvent.from_properties(props) == UdevEvent(
        "net", "add", f"{PF}/net/enp1s0", "enp1s0", 7
    )


@pytest.mark.parametrize(
    "change",
    [
        {"SUBSYSTEM": "block"},
        {"SUBSYSTEM": None},
        {"ACTION": "ADD; rm -rf"},
        {"ACTION": None},
        {"DEVPATH": "/sys/devices/x"},
        {"DEVPATH": "/devices/../etc"},
        {"INTERFACE": "a/b"},
        {"INTERFACE": "sixteen-bytes-xx"},
        {"INTERFACE": ""},
        {"IFINDEX": "0"},
        {"IFINDEX": "-3"},
        {"IFINDEX": "2147483648"},
        {"IFINDEX": "\u0663"},  # Arabic-Indic digit three: isdigit(), not ASCII
    ],
)
def test_uevents_the_kernel_never_writes_are_dropped(change: dict[str, str | None]) -> None:
    props = {
        "ACTION": "add", "DEVPATH": f"{PF}/net/eth0", "SUBSYSTEM": "net",
        "INTERFACE": "eth0", "IFINDEX": "3",
    }  # fmt: skip
    for key, value in change.items():
        if value is None:
            del props[key]
        else:
            props[key] = value
    assert UdevEvent.from_properties(props) is None


@pytest.mark.parametrize("name", ["0000:01:00.0x", "0000:1:00.0", "0000:01:20.0", "0000:01:00.8"])
def test_pci_names_not_in_the_kernels_form_are_dropped(name: str) -> None:
    props = {"ACTION": "add", "DEVPATH": PF, "SUBSYSTEM": "pci", "PCI_SLOT_NAME": name}
    assert UdevEvent.from_properties(props) is None


def test_interface_names_follow_dev_valid_name() -> None:
    assert valid_ifname("enp65s0f0v12")
    assert valid_ifname("x" * 15)
    assert not valid_ifname("x" * 16)
    assert not valid_ifname("é" * 8)  # 16 bytes in UTF-8
    for bad in ("", ".", "..", "a:b", "a b", "a\tb", "a\0"):
        assert not valid_ifname(bad)
