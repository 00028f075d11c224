"""The systemd unit and the udev rule: checked by systemd's own tools where this
machine has them, and the unit's hardening read back from the file."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "qtagent.service"
RULE = REPO / "udev" / "70-qtagent-vf-unmanaged.rules"


def service() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(UNIT.read_text())
    return parser["Service"]


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    # verify also checks that ExecStart's program exists: point it at this checkout's.
    program = shutil.which("qtagent") or str(REPO / ".venv" / "bin" / "qtagent")
    if not Path(program).exists():
        pytest.skip("no qtagent console script to stand in for /usr/local/bin/qtagent")
    unit = tmp_path / "qtagent.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/qtagent", program))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    ours = [line for line in done.stderr.splitlines() if "qtagent.service" in line]
    assert done.returncode == 0, done.stderr
    assert ours == []


def test_the_unit_is_a_notify_service_with_a_watchdog() -> None:
    unit = service()
    assert unit["Type"] == "notify"
    assert unit["NotifyAccess"] == "main"
    assert unit["ExecStart"].split()[:2] == ["/usr/local/bin/qtagent", "serve"]
    assert unit["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert unit["WatchdogSec"] == "120s"
    assert unit["Restart"] == "on-failure"


def test_the_unit_is_hardened() -> None:
    unit = service()
    expected = {
        "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
        "NoNewPrivileges": "yes", "RestrictAddressFamilies": "AF_UNIX AF_NETLINK",
        "SystemCallFilter": "@system-service", "SystemCallArchitectures": "native",
        "MemoryDenyWriteExecute": "yes", "LockPersonality": "yes", "RestrictRealtime": "yes",
        "RestrictNamespaces": "yes", "RestrictSUIDSGID": "yes", "ProtectKernelModules": "yes",
        "ProtectKernelLogs": "yes", "ProtectClock": "yes", "ProtectHostname": "yes",
        "ProtectControlGroups": "yes", "StateDirectory": "qtagent",
        "StateDirectoryMode": "0700", "UMask": "0077", "IPAddressDeny": "any",
        "DevicePolicy": "closed",
    }  # fmt: skip
    assert {key: unit.get(key) for key in expected} == expected
    assert set(unit["CapabilityBoundingSet"].split()) == {
        "CAP_NET_ADMIN", "CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH",
    }  # fmt: skip


def test_the_unit_leaves_sysfs_writable() -> None:
    """sriov_numvfs, bind/unbind and driver_override are writes to /sys: nothing in the
    unit may make it read-only (ProtectKernelTunables, PrivateDevices would hide /dev/vfio)."""
    unit = service()
    assert unit.get("ProtectKernelTunables", "no") == "no"
    assert unit.get("PrivateDevices", "no") == "no"
    assert "/sys" not in unit.get("ReadOnlyPaths", "") + unit.get("InaccessiblePaths", "")


def test_udevadm_verify_accepts_the_rule() -> None:
    if shutil.which("udevadm") is None:
        pytest.skip("udevadm is not installed")
    done = subprocess.run(
        ["udevadm", "verify", str(RULE)], capture_output=True, text=True, check=False
    )
    if done.returncode != 0 and "Unknown command" in done.stderr + done.stdout:
        pytest.skip("this udevadm has no verify (systemd < 254)")
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'ENV{NM_UNMANAGED}="1"' in RULE.read_text()
