"""Both VfNetlink backends against the host's own kernel, through loopback.

Loopback has no VFs and no VF ndo, so this proves the socket path, errno mapping and
logging anywhere Linux runs; the lab guest proves real VF behaviour
(tests/lab/test_knobs_lab.py).
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from qtagent.errors import InvalidInput, NotFound, Unsupported
from qtagent.netlink.api import Knob, VfNetlink
from qtagent.netlink.pyroute2_backend import Pyroute2VfNetlink
from qtagent.netlink.rtnl_backend import RtnlVfNetlink

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_NETLINK"), reason="needs Linux")

LO = socket.if_nametoindex("lo") if hasattr(socket, "if_nametoindex") else 1
NO_SUCH_IFINDEX = 0x7FFFFFF0


@pytest.fixture(params=[RtnlVfNetlink, Pyroute2VfNetlink])
def backend(request: pytest.FixtureRequest) -> Iterator[VfNetlink]:
    nl: VfNetlink = request.param()
    yield nl
    nl.close()
    nl.close()  # closing twice is fine


def test_a_link_without_vfs_reads_as_an_empty_table(backend: VfNetlink) -> None:
    assert dict(backend.read_vfs(LO)) == {}


def test_a_missing_link_is_not_found_with_its_errno(backend: VfNetlink) -> None:
    with pytest.raises(NotFound) as caught:
        backend.read_vfs(NO_SUCH_IFINDEX)
    assert caught.value.errno == errno.ENODEV
    assert "ip link show" in str(caught.value)


@pytest.mark.skipif(os.geteuid() != 0, reason="setting a link needs CAP_NET_ADMIN")
def test_a_driver_without_the_knob_is_unsupported_and_logged_as_shell(
    backend: VfNetlink, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.DEBUG, logger="qtagent.netlink"),
        pytest.raises(Unsupported) as caught,
    ):
        backend.set_knob(LO, 0, Knob.TRUST, True)
    assert caught.value.errno == errno.EOPNOTSUPP
    assert "ip link set lo vf 0 trust on failed" in str(caught.value)
    assert "ip link set lo vf 0 trust on" in caplog.messages


def test_importing_the_pyroute2_backend_does_not_import_pyroute2() -> None:
    code = (
        "import sys, qtagent.netlink.pyroute2_backend, qtagent.effects.knobs;"
        "sys.exit('pyroute2' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


@pytest.mark.parametrize("ifindex", [0, 2**31, 2**64])
def test_an_ifindex_out_of_range_is_refused_before_anything_is_sent(
    backend: VfNetlink, ifindex: int
) -> None:
    """Was a struct.error (rtnl) or whatever pyroute2 made of it."""
    with pytest.raises(InvalidInput, match=f"interface index {ifindex} is out of range"):
        backend.read_vfs(ifindex)
    with pytest.raises(InvalidInput, match=f"interface index {ifindex} is out of range"):
        backend.set_knob(ifindex, 0, Knob.TRUST, True)


def test_a_vf_index_out_of_range_is_refused_before_anything_is_sent(backend: VfNetlink) -> None:
    with pytest.raises(InvalidInput, match="VF index 4294967296 is out of range"):
        backend.set_knob(LO, 2**32, Knob.TRUST, True)
