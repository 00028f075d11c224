"""Strict parsing of sysfs integers (qtagent/sysfs/attrs.py): exactly what the kernel
writes is read, anything else is a malformed attribute named by its file."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qtagent.errors import MalformedAttribute
from qtagent.sysfs.attrs import IntFormat, number_in_name, parse_int

PATH = "/sys/bus/pci/devices/0000:41:00.0/attr"
U64 = st.integers(min_value=0, max_value=2**64 - 1)
S64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
U16 = st.integers(min_value=0, max_value=0xFFFF)


def kernel_text(value: int, form: IntFormat) -> bytes:
    """What the kernel's sysfs_emit writes for ``value`` (vendor IDs: ``0x%04x``)."""
    printed = {
        IntFormat.DECIMAL: f"{value}",
        IntFormat.COUNT: f"{value}",
        IntFormat.HEX: f"0x{value:04x}",
        IntFormat.BARE_HEX: f"{value:x}",
    }[form]
    return printed.encode() + b"\n"


@pytest.mark.parametrize(
    ("data", "form", "value"),
    [
        (b"0\n", IntFormat.DECIMAL, 0),
        (b"-1\n", IntFormat.DECIMAL, -1),  # numa_node without NUMA, speed without carrier
        (b"1000", IntFormat.DECIMAL, 1000),  # no newline: a fake tree written by hand
        (b"7\n", IntFormat.COUNT, 7),
        (b"0x8086\n", IntFormat.HEX, 0x8086),
        (b"0x020000\n", IntFormat.HEX, 0x020000),
        (b"10ca\n", IntFormat.BARE_HEX, 0x10CA),
    ],
)
def test_what_the_kernel_writes_is_read(data: bytes, form: IntFormat, value: int) -> None:
    assert parse_int(data, form, PATH) == value


@pytest.mark.parametrize(
    ("data", "form"),
    [
        (b" 1_0 ", IntFormat.DECIMAL),
        (b"1_0", IntFormat.DECIMAL),
        (b"+3", IntFormat.DECIMAL),
        (b" 3", IntFormat.DECIMAL),
        (b"3 \n", IntFormat.DECIMAL),
        (b"03", IntFormat.DECIMAL),
        (b"-0", IntFormat.DECIMAL),
        ("٣".encode(), IntFormat.DECIMAL),  # an Arabic-Indic 3: int() takes it
        ("³".encode(), IntFormat.COUNT),
        (b"", IntFormat.DECIMAL),
        (b"\n", IntFormat.COUNT),
        (b"7\n\n", IntFormat.COUNT),
        (b"7\r\n", IntFormat.COUNT),
        (b"7\x00", IntFormat.COUNT),
        (b"-1", IntFormat.COUNT),
        (b"3 VFs", IntFormat.COUNT),
        (b"123456789012345678901", IntFormat.COUNT),  # more digits than a u64 has
        (b"8086\n", IntFormat.HEX),  # the kernel writes 0x8086
        (b"0X8086", IntFormat.HEX),
        (b"0x10C9", IntFormat.HEX),
        (b"0x", IntFormat.HEX),
        (b"-0x1", IntFormat.HEX),
        (b"0x10ca\n", IntFormat.BARE_HEX),  # the kernel writes sriov_vf_device bare
        (b"10CA", IntFormat.BARE_HEX),
    ],
)
def test_anything_else_is_a_malformed_attribute_naming_the_file(
    data: bytes, form: IntFormat
) -> None:
    with pytest.raises(MalformedAttribute) as raised:
        parse_int(data, form, PATH)
    assert raised.value.message.startswith(f"{PATH} holds {data[:40]!r}, not an integer")
    assert f"({form.printf!r})" in raised.value.message
    assert "something other than the kernel wrote this file" in raised.value.hint


@given(form=st.sampled_from(IntFormat), data=st.data())
def test_every_value_the_kernel_prints_reads_back(form: IntFormat, data: st.DataObject) -> None:
    strategy = {IntFormat.DECIMAL: S64, IntFormat.HEX: U16}.get(form, U64)
    value = data.draw(strategy)
    text = kernel_text(value, form)
    assert parse_int(text, form, PATH) == value
    assert parse_int(text.rstrip(b"\n"), form, PATH) == value


# Text close to numbers: signs, spaces, underscores, both cases, odd digits and newlines.
NEAR_NUMBERS = st.one_of(
    st.binary(max_size=24),
    st.from_regex(rb"\A[-+ _\t\n\r0-9a-fA-FxX]{0,12}\Z"),
    st.text(st.characters(categories=["Nd", "No", "Zs", "Pd"]), max_size=8).map(str.encode),
    st.builds(lambda n, junk: f"{n}{junk}".encode(), S64, st.sampled_from(["", " ", "\n\n", "_0"])),
)


@given(form=st.sampled_from(IntFormat), data=NEAR_NUMBERS)
def test_only_the_kernels_own_text_is_accepted(form: IntFormat, data: bytes) -> None:
    """Whatever parses must be exactly how the kernel prints that value (hex may be
    zero-padded, as ``%04x`` does), with at most one trailing newline."""
    try:
        value = parse_int(data, form, PATH)
    except MalformedAttribute as err:
        assert PATH in err.message
        return
    text = data.removesuffix(b"\n")
    if form in (IntFormat.DECIMAL, IntFormat.COUNT):
        assert text == str(value).encode()
    else:
        digits = text.removeprefix(b"0x") if form is IntFormat.HEX else text
        assert text.startswith(b"0x") == (form is IntFormat.HEX)
        assert digits == f"{value:0{len(digits)}x}".encode()
    assert value >= 0 or form is IntFormat.DECIMAL


@pytest.mark.parametrize(
    ("name", "prefix", "number"),
    [
        ("virtfn0", "virtfn", 0),
        ("virtfn12", "virtfn", 12),
        ("netdevsim3", "netdevsim", 3),
        ("27", "", 27),
        ("virtfn", "virtfn", None),
        ("virtfn01", "virtfn", None),
        ("virtfn٣", "virtfn", None),  # int() would take it: a duplicate VF 3
        ("virtfn+1", "virtfn", None),
        ("virtfn 1", "virtfn", None),
        ("virtfnX", "virtfn", None),
        ("physfn", "virtfn", None),
        ("²", "", None),  # str.isdigit() is True, int() raises
    ],
)
def test_number_in_a_name_the_kernel_made(name: str, prefix: str, number: int | None) -> None:
    assert number_in_name(name, prefix) == number


@given(prefix=st.sampled_from(["", "virtfn", "netdevsim"]), rest=st.text(max_size=12))
def test_a_number_is_found_only_in_a_name_the_kernel_could_make(prefix: str, rest: str) -> None:
    number = number_in_name(prefix + rest, prefix)
    assert number is None or prefix + rest == f"{prefix}{number}"
