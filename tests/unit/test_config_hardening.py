"""The host config against hostile or careless input: what is read (only a bounded
regular file), how deep TOML and type confusions fail, and that every error names
the file, the PF section and the TOML key, with a hint in TOML terms."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qtagent.config import MAX_CONFIG_BYTES, load_host_config, parse_host_config
from qtagent.errors import ConfigError
from qtagent.model.desired import VfDefaults

PF = '[pf."0000:41:00.0"]\nnum_vfs = 2\n'


def refused(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_host_config(text.encode(), source="host.toml")
    return info.value


# ---------------------------------------------------------------- rates (finding 1)


def test_min_rate_above_max_rate_is_refused_naming_the_section_and_both_values() -> None:
    err = refused(PF + "vf_defaults = { max_tx_rate = 100, min_tx_rate = 200 }\n")
    assert str(err).startswith('host.toml, [pf."0000:41:00.0"]: ')
    assert "vf_defaults.min_tx_rate = 200 is above vf_defaults.max_tx_rate = 100" in str(err)
    assert "lower min_tx_rate to at most 100" in err.hint
    assert "raise max_tx_rate to at least 200" in err.hint and "max_tx_rate = 0" in err.hint


@pytest.mark.parametrize(
    "rates",
    [
        "max_tx_rate = 0, min_tx_rate = 200",
        "min_tx_rate = 200",
        "max_tx_rate = 200, min_tx_rate = 200",
    ],
)
def test_a_guarantee_within_the_limit_or_without_one_loads(rates: str) -> None:
    config = parse_host_config((PF + f"vf_defaults = {{ {rates} }}\n").encode())
    assert config.pfs[0].vf_defaults.min_tx_rate == 200


# ---------------------------------------------------------------- malformed TOML (finding 3)


@pytest.mark.parametrize("opening", ["[", "{a="])
def test_deeply_nested_toml_is_a_config_error(opening: str) -> None:
    err = refused("x = " + opening * 5000)
    assert "host.toml is malformed" in str(err) and "nested too deeply" in str(err)
    assert err.__cause__ is not None


def test_a_number_with_thousands_of_digits_is_a_config_error() -> None:
    err = refused('[pf."a"]\nnum_vfs = ' + "9" * 5000)
    assert "host.toml is malformed" in str(err)
    assert "set_int_max_str_digits" not in err.diagnostics()


def test_more_than_the_size_limit_is_refused_saying_the_limit() -> None:
    err = refused("#" * MAX_CONFIG_BYTES + "\n")
    assert "larger than 1 MiB" in str(err)


def test_bytes_that_are_not_utf8_say_where() -> None:
    with pytest.raises(ConfigError, match="not UTF-8 text: line 2 has a byte") as info:
        parse_host_config(b'[pf."a"]\nnum\xff', source="host.toml")
    assert "UTF-8" in info.value.hint


# ---------------------------------------------------------------- type confusions (finding 3)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("version = true", "version true is not supported"),
        ("version = 1.0", "version 1.0 is not supported"),
        ('version = "1"', 'version "1" is not supported'),
        ("version = [1]", "version [...] is not supported"),
        ("pf = [1]", "pf must be a table of PFs, not an array"),
        ("[[pf]]\nnum_vfs = 1", "pf must be a table of PFs, not an array"),
        ("[pf]\na = 3", "[pf.a] must be a table, not a whole number 3"),
        ('[pf."a"]\nnum_vfs = [1]', "num_vfs must be a whole number, not an array"),
        ('[pf."a"]\nnum_vfs = { n = 1 }', "num_vfs must be a whole number, not a table"),
        ('[pf."a"]\nnum_vfs = 1.0', "num_vfs must be a whole number, not a float 1.0"),
        ('[pf."a"]\nnum_vfs = nan', "num_vfs must be a whole number, not a float nan"),
        ('[pf."a"]\nnum_vfs = 1979-05-27', "num_vfs must be a whole number, not a date"),
        ('[pf."a"]\nnum_vfs = true', "num_vfs must be a whole number, not a boolean true"),
        ('[pf."a"]\nnum_vfs = 1\nvf_defaults = [1]', "vf_defaults must be a table, not an array"),
        ('[pf."a"]\nnum_vfs = 1\nvf_defaults = 3', "vf_defaults must be a table, not a whole"),
        (
            '[pf."a"]\nnum_vfs = 1\nvf_defaults = { vlan = true }',
            "vf_defaults.vlan must be a whole",
        ),
        ('[pf."a"]\nnum_vfs = 1\nvf_defaults = { qos = 1.5 }', "vf_defaults.qos must be a whole"),
        ('[pf."a"]\nnum_vfs = 1\nvf_defaults = { max_tx_rate = false }', "max_tx_rate must be"),
        ('[pf."a"]\nnum_vfs = 1\nvf_defaults = { min_tx_rate = "5" }', "min_tx_rate must be"),
        ('[pf."a"]\nnum_vfs = 1\nvf_defaults = { spoofchk = 1 }', "spoofchk must be true or false"),
        ('[pf."a"]\nnum_vfs = 1\nvf_defaults = { trust = [true] }', "trust must be true or false"),
        ('[pf."a"]\nnum_vfs = 1\nvf_defaults = { link_state = 1 }', "link_state must be one of"),
        (
            '[pf."a"]\nnum_vfs = 1\nvf_defaults = { link_state = "auto\\u001b[2J" }',
            r'link_state = "auto\u001b[2J" is not a link state',
        ),
        ('[pf.""]\nnum_vfs = 1', '"" is not a PF name'),
        ('[pf."eth0\\u001b[31m"]\nnum_vfs = 1', r'"eth0\u001b[31m" is not a PF name'),
        ('[pf."eth 0"]\nnum_vfs = 1', '"eth 0" is not a PF name'),
        (f'[pf."{"e" * 65}"]\nnum_vfs = 1', "is not a PF name"),
        ('[pf."a"]\nnum_vfs = 1\n"vl\\u0000an" = 3', r'unknown key "vl\u0000an"'),
    ],
)
def test_a_value_of_the_wrong_type_is_a_clear_error(text: str, message: str) -> None:
    err = refused(text)
    assert message in str(err), str(err)
    assert str(err).startswith("host.toml")
    assert err.hint


def test_link_state_as_an_array_names_the_key_and_the_allowed_values() -> None:
    err = refused(PF + 'vf_defaults = { link_state = ["auto"] }\n')
    assert 'vf_defaults.link_state must be one of "auto", "enable" or "disable"' in str(err)
    assert "not an array" in str(err)


def test_long_values_are_cut_short_in_messages() -> None:
    err = refused('[pf."a"]\nnum_vfs = "' + "x" * 10_000 + '"')
    assert len(str(err)) < 200


def test_a_quoted_pf_name_is_shown_as_written_and_a_bare_one_bare() -> None:
    assert str(refused('[pf.enp1s0]\nnum_vfs = "2"')).startswith("host.toml, [pf.enp1s0]: ")
    quoted = refused('[pf."0000:41:00.0"]\nnum_vfs = "2"')
    assert str(quoted).startswith('host.toml, [pf."0000:41:00.0"]: ')


def test_version_1_as_a_whole_number_loads() -> None:
    assert parse_host_config(b"version = 1\n" + PF.encode()).pfs[0].num_vfs == 2


# ---------------------------------------------------------------- hints (finding 4)


@pytest.mark.parametrize(
    "defaults",
    [
        "qos = 2",
        "vlan = 0, qos = 2",
        "qos = 9, vlan = 3",
        "vlan = 5000",
        "max_tx_rate = -1",
        "min_tx_rate = 99999999999",
        "max_tx_rate = 10, min_tx_rate = 20",
        'link_state = "up"',
        "spoofchk = 1",
    ],
)
def test_vf_default_hints_name_toml_keys_not_cli_flags(defaults: str) -> None:
    err = refused(PF + f"vf_defaults = {{ {defaults} }}\n")
    key = defaults.split(" =", maxsplit=1)[0] if "qos = 2" not in defaults else "vlan"
    assert "--" not in err.diagnostics()
    assert key in err.hint, err.hint


def test_qos_without_a_vlan_says_which_keys_to_set() -> None:
    err = refused(PF + "vf_defaults = { qos = 2 }\n")
    assert "QoS needs a VLAN: vf_defaults.qos = 2 but vf_defaults.vlan is not set" in str(err)
    assert "vf_defaults.vlan" in err.hint and "vf_defaults.qos = 0" in err.hint


def test_a_misspelt_key_gets_a_suggestion() -> None:
    err = refused('[pf."a"]\nnumvfs = 1\n')
    assert 'unknown key "numvfs"' in str(err) and "did you mean num_vfs?" in err.hint
    err = refused(PF + "vf_defaults = { trsut = true }\n")
    assert 'unknown key "vf_defaults.trsut"' in str(err)
    assert err.hint.startswith("did you mean vf_defaults.trust? allowed in vf_defaults: ")


# ---------------------------------------------------------------- reading the file (finding 3)


def test_a_regular_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "host.toml"
    path.write_text(PF + "vf_defaults = { trust = true }\n")
    assert load_host_config(path).pfs[0].vf_defaults == VfDefaults(trust=True)


def test_a_file_of_exactly_the_limit_loads(tmp_path: Path) -> None:
    path = tmp_path / "host.toml"
    path.write_bytes(b"#" * (MAX_CONFIG_BYTES - 1) + b"\n")
    assert load_host_config(path).pfs == ()


def test_a_file_above_the_limit_is_refused_saying_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "host.toml"
    path.write_bytes(b"#" * MAX_CONFIG_BYTES + b"\n")
    with pytest.raises(ConfigError, match="larger than 1 MiB"):
        load_host_config(path)


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_a_device_is_refused_without_reading_it(device: str) -> None:
    if not os.path.exists(device):
        pytest.skip(f"{device} does not exist here")
    with pytest.raises(ConfigError, match="is not a regular file: it is a character device"):
        load_host_config(Path(device))


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "host.toml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="is not a regular file: it is a FIFO"):
        load_host_config(fifo)


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a regular file: it is a directory"):
        load_host_config(tmp_path)


def test_a_missing_file_keeps_its_errno(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot open") as info:
        load_host_config(tmp_path / "nope.toml")
    assert info.value.errno_name == "ENOENT" and "path" in info.value.hint


def test_a_symlink_to_a_regular_file_loads(tmp_path: Path) -> None:
    target = tmp_path / "real.toml"
    target.write_text(PF)
    link = tmp_path / "host.toml"
    link.symlink_to(target)
    assert load_host_config(link).pfs[0].num_vfs == 2


# ---------------------------------------------------------------- any value anywhere


def toml_value(value: object) -> str:
    """A value as a TOML inline value (json.dumps writes valid TOML basic strings)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
        )
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("nan" if math.isnan(value) else "inf")
    return json.dumps(value)


SCALARS = (
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats()
    | st.text(max_size=20)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
KEYS = st.sampled_from(
    ["version", "num_vfs", "vf_defaults"] + [f"vf_defaults.{key}" for key in VfDefaults.__slots__]
)


@given(key=KEYS, value=VALUES)
def test_any_value_under_any_key_loads_or_is_a_config_error(key: str, value: object) -> None:
    line = f"{key.rsplit('.', maxsplit=1)[-1]} = {toml_value(value)}"
    if key == "version":
        text = f"{line}\n{PF}"
    elif key.startswith("vf_defaults."):
        text = f"{PF}vf_defaults = {{ {line} }}\n"
    else:
        text = f'[pf."0000:41:00.0"]\n{line}\n' + ("num_vfs = 1\n" if key != "num_vfs" else "")
    try:
        config = parse_host_config(text.encode(), source="host.toml")
    except ConfigError as err:
        assert str(err).startswith("host.toml")
        assert err.hint and "--" not in err.hint
        assert len(err.message) < 400
        return
    assert len(config.pfs) == 1
