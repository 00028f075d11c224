"""Boot the lab guest and run a command in it (the edge: subprocesses and files).

The machine-wide lab cache (``/var/lib/qtagent-lab`` by default; not under
/var/cache, which virtme-ng mounts as tmpfs in the guest) is filled by
``scripts/setup.sh``: ``kernel-release`` names the guest kernel, and
``<release>/netdevsim.ko`` is the out-of-tree netdevsim built for it.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from qtagent.errors import LabError
from qtagent.lab.spec import LabSpec

log = logging.getLogger(__name__)

DEFAULT_CACHE = Path("/var/lib/qtagent-lab")
SETUP_HINT = "run `make setup` (or scripts/setup.sh) first; it installs and caches the lab"


def lab_cache() -> Path:
    return Path(os.environ.get("QTAGENT_LAB_CACHE", str(DEFAULT_CACHE)))


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def resolve_spec(
    out_dir: Path, *, cpus: int = 2, memory_mib: int = 3072, acs: bool = True
) -> LabSpec:
    """Build the LabSpec from what setup cached; refuse clearly when something is missing."""
    cache = lab_cache()
    release_file = cache / "kernel-release"
    release = os.environ.get("QTAGENT_LAB_KERNEL_RELEASE")
    if release is None:
        try:
            release = release_file.read_text().strip()
        except FileNotFoundError:
            raise LabError(
                f"the lab is not set up: {release_file} is missing", hint=SETUP_HINT
            ) from None
    kernel = Path(f"/boot/vmlinuz-{release}")
    if not kernel.is_file():
        raise LabError(f"lab kernel {kernel} is missing", hint=SETUP_HINT)
    if not Path(f"/lib/modules/{release}/modules.dep").is_file():
        raise LabError(f"modules of lab kernel {release} are missing", hint=SETUP_HINT)
    venv = Path(sys.prefix)
    if not (venv / "bin" / "vng").is_file():
        raise LabError(f"virtme-ng (vng) is not installed in {venv}", hint=SETUP_HINT)
    if shutil.which("qemu-system-x86_64") is None:
        raise LabError("qemu-system-x86_64 is not installed", hint=SETUP_HINT)
    ko = cache / release / "netdevsim.ko"
    (cache / "libvirt").mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    return LabSpec(
        kernel=kernel,
        repo=repo_root(),
        out_dir=out_dir.resolve(),
        cache_dir=cache,
        netdevsim_ko=ko if ko.is_file() else None,
        venv=venv,
        cpus=cpus,
        memory_mib=memory_mib,
        acs=acs,
    )


def run_in_lab(spec: LabSpec, command: list[str] | None) -> int:
    """Boot the guest, run ``command`` (None: interactive shell), return its exit code.

    Output is piped through us line by line: virtme-ng's two output streams
    overwrite each other when redirected straight into one file.
    """
    line = shlex.join(command) if command else None
    argv = spec.vng_args(line)
    log.debug("%s", shlex.join(argv))
    # vng runs its helpers (virtme-run) from PATH.
    env = dict(os.environ, PATH=f"{spec.venv / 'bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    if command is None:
        return subprocess.call(argv, env=env)
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
    ) as proc:
        stream = proc.stdout
        assert stream is not None
        for chunk in iter(stream.readline, b""):
            sys.stdout.buffer.write(chunk)
            sys.stdout.buffer.flush()
        return proc.wait()
