"""A real single-node SLURM cluster for the tests in this folder, brought up by scripts/slurm_cluster.sh.

The session fixture starts it when it can (root, apt or slurm already installed, CONDSYNTH_SKIP_SLURM unset) and
stops it at the end of the session if it started it. Otherwise the tests skip and say why.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

SCRIPT = Path(REPO_ROOT) / "scripts" / "slurm_cluster.sh"
USERS_LOCK = "/run/condsynth-slurm.users"  # every session using the cluster holds a shared lock on it
STARTED_MARK = "/run/condsynth-slurm/started-by-tests"


def _script(cmd: str, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), cmd], capture_output=True, text=True, timeout=timeout)


def _cannot_run_reason() -> str | None:
    if os.environ.get("CONDSYNTH_SKIP_SLURM"):
        return "CONDSYNTH_SKIP_SLURM is set"
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "bringing up a SLURM cluster needs root (scripts/slurm_cluster.sh installs and starts slurmctld/slurmd/munged)"
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        return "slurm is not installed and there is no apt-get to install it (Debian's slurmctld slurmd slurm-client munge)"
    return None


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[str]:
    """Yields the partition name ("debug") of a running single-node cluster."""
    reason = _cannot_run_reason()
    if reason:
        pytest.skip(f"no SLURM cluster: {reason}")
    os.makedirs(os.path.dirname(STARTED_MARK), exist_ok=True)
    users = open(USERS_LOCK, "a+")  # noqa: SIM115 - held for the whole session
    fcntl.flock(users, fcntl.LOCK_SH)
    started = False
    if _script("status", 60).returncode != 0:
        up = _script("up", 900)
        if up.returncode in (2, 3, 4):  # not root / cannot install / a foreign slurm.conf: environment, not a bug
            users.close()
            pytest.skip(f"no SLURM cluster: scripts/slurm_cluster.sh up: {(up.stderr or up.stdout).strip()[-500:]}")
        if up.returncode != 0:
            users.close()
            pytest.fail(f"scripts/slurm_cluster.sh up failed (exit {up.returncode}):\n{up.stdout[-3000:]}\n"
                        f"{up.stderr[-3000:]}", pytrace=False)
        Path(STARTED_MARK).touch()
        started = True
    try:
        yield "debug"
    finally:
        # stop it if a test session started it and no other session is using it
        try:
            fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
            others = False
        except OSError:
            others = True
        if (started or os.path.exists(STARTED_MARK)) and not others:
            down = _script("down", 120)
            if down.returncode == 0 and os.path.exists(STARTED_MARK):
                os.remove(STARTED_MARK)
        users.close()
