"""The host config: valid files load into values; every kind of bad file is a clear error."""

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qtagent.config import HostConfig, parse_host_config
from qtagent.errors import ConfigError
from qtagent.model.desired import VfDefaults
from qtagent.model.host import LinkState

GOOD = b"""
version = 1
[pf."0000:41:00.0"]
num_vfs = 4
vf_defaults = { spoofchk = true, trust = false, vlan = 100, qos = 3, link_state = "auto" }
[pf.enp129s0]
num_vfs = 0
"""


def test_valid_config_loads() -> None:
    config = parse_host_config(GOOD)
    assert [pf.name for pf in config.pfs] == ["0000:41:00.0", "enp129s0"]
    first = config.pfs[0]
    assert first.num_vfs == 4
    assert first.vf_defaults == VfDefaults(
        vlan=100, qos=3, spoofchk=True, trust=False, link_state=LinkState.AUTO
    )
    assert config.pfs[1].vf_defaults.is_empty()


def test_empty_file_is_an_empty_config() -> None:
    assert parse_host_config(b"") == HostConfig()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"[pf.x\nnum_vfs = 1", "not valid TOML"),
        (b"version = 2", "version 2 is not supported"),
        (b"colour = 1", 'unknown key "colour"'),
        (b'[pf."a"]\nnumvfs = 1', 'unknown key "numvfs"'),
        (b'[pf."a"]\nvf_defaults = {}', "num_vfs is missing"),
        (b'[pf."a"]\nnum_vfs = "4"', "must be a whole number"),
        (b'[pf."a"]\nnum_vfs = true', "must be a whole number"),
        (b'[pf."a"]\nnum_vfs = -1', "out of range"),
        (b'[pf."a"]\nnum_vfs = 1\nvf_defaults = { vlan = 5000 }', "vlan = 5000 is out of range"),
        (b'[pf."a"]\nnum_vfs = 1\nvf_defaults = { qos = 2 }', "QoS needs a VLAN"),
        (b'[pf."a"]\nnum_vfs = 1\nvf_defaults = { spoofchk = "yes" }', "true or false"),
        (
            b'[pf."a"]\nnum_vfs = 1\nvf_defaults = { mac = "52:54:00:00:00:01" }',
            'unknown key "vf_defaults.mac"',
        ),
        (b'[pf."a"]\nnum_vfs = 1\nvf_defaults = { link_state = "up" }', "not a link state"),
        (b"pf = 3", "must be a table"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_bad_config_is_a_clear_error(text: bytes, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_host_config(text, source="host.toml")
    assert "host.toml" in str(info.value)


@given(st.binary(max_size=200))
def test_hostile_bytes_give_config_or_config_error(raw: bytes) -> None:
    with contextlib.suppress(ConfigError):
        assert isinstance(parse_host_config(raw), HostConfig)
