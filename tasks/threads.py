"""How many intra-op threads torch uses: as many CPUs as this process may use, not as many as the machine has.

PyTorch starts one OpenMP thread per core of the machine. When the process may use fewer (a CPU affinity mask, a
SLURM allotment, a container's cgroup quota), or other processes keep cores busy, those threads spin against each
other and training runs many times slower (issue 20 measured 14x on a 2-core machine with one busy core). The
config key ``threads`` (conf/config.yaml) picks the count:

* ``auto`` (default): ``OMP_NUM_THREADS`` when it is set; otherwise the CPUs this process may use (the smallest of
  its affinity mask, ``SLURM_CPUS_PER_TASK`` and the cgroup v2 ``cpu.max`` / v1 ``cpu.cfs_quota_us`` quota), shared
  by the training processes of this node (``trainer.devices`` under DDP) and less one per DataLoader worker (each
  worker runs one thread: :func:`datamodules.base.worker_init`); at least 1.
* ``<n>``: exactly ``n`` threads.

The choice is logged once at start (``threads: 2 intra-op (affinity 2 CPUs, 0 DataLoader workers)``).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("condsynth")

CGROUP_ROOT = "/sys/fs/cgroup"
PROC_CGROUP = "/proc/self/cgroup"
OMP_WAIT_POLICY = "PASSIVE"  # see passive_wait
V2_DEFAULT_PERIOD_US = 100_000  # the kernel's cpu.max period when only a quota is written


@dataclass(frozen=True)
class ThreadChoice:
    """The intra-op thread count and why."""

    threads: int
    cpus: int                # CPUs this process may use
    source: str              # what limits them: "affinity", "SLURM_CPUS_PER_TASK", "cgroup quota", ...
    workers: int             # DataLoader workers (one thread each)
    processes: int = 1       # training processes on this node sharing the CPUs

    def describe(self) -> str:
        shared = f", {self.processes} processes" if self.processes > 1 else ""
        if self.source in ("threads", "OMP_NUM_THREADS"):
            how = f"{self.source}={self.threads}"
        else:
            how = f"{self.source} {self.cpus} CPUs"
        return f"threads: {self.threads} intra-op ({how}{shared}, {self.workers} DataLoader workers)"


def affinity_cpus() -> int:
    """CPUs in this process's affinity mask (``taskset``, SLURM's task/affinity, ``docker --cpuset-cpus``)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def slurm_cpus(env: Mapping[str, str]) -> int | None:
    """``SLURM_CPUS_PER_TASK`` (set by ``--cpus-per-task``), or None."""
    try:
        value = int(env.get("SLURM_CPUS_PER_TASK") or 0)
    except ValueError:
        return None
    return value if value > 0 else None


def _quota(quota: float, period: float) -> int | None:
    return max(1, math.ceil(quota / period)) if quota > 0 and period > 0 else None


def _ancestors(group: str) -> list[str]:
    """``/a/b`` -> ``["a/b", "a", ""]``: a quota set on any enclosing group applies."""
    parts = [p for p in group.strip("/").split("/") if p]
    return ["/".join(parts[:i]) for i in range(len(parts), -1, -1)]


def _read_v2(path: str) -> int | None | bool:
    """``cpu.max`` of one group: its CPUs, None for ``max``, False when the file is absent."""
    try:
        with open(path) as f:
            fields = f.read().split()
    except OSError:
        return False
    if not fields or fields[0] == "max":
        return None
    try:
        return _quota(float(fields[0]), float(fields[1]) if len(fields) > 1 else V2_DEFAULT_PERIOD_US)
    except ValueError:
        return None


def _read_v1(folder: str) -> int | None | bool:
    try:
        with open(os.path.join(folder, "cpu.cfs_quota_us")) as f:
            quota = float(f.read().strip())
        with open(os.path.join(folder, "cpu.cfs_period_us")) as f:
            period = float(f.read().strip())
    except OSError:
        return False
    except ValueError:
        return None
    return _quota(quota, period)


def cgroup_cpus(cgroup_root: str = CGROUP_ROOT, proc_cgroup: str = PROC_CGROUP) -> int | None:
    """The CPU quota of this process's cgroup (the smallest on its path up to the root), rounded up to whole CPUs;
    None: no quota. cgroup v2: ``cpu.max`` (``<quota> <period>`` or ``max <period>``); v1: ``cpu.cfs_quota_us`` /
    ``cpu.cfs_period_us`` (-1: none) under ``cpu/`` or ``cpu,cpuacct/``."""
    groups: dict[str, str] = {}  # controller ("" for v2) -> group path
    try:
        with open(proc_cgroup) as f:
            for line in f:
                parts = line.strip().split(":", 2)
                if len(parts) == 3:
                    for controller in parts[1].split(","):
                        groups[controller] = parts[2]
    except OSError:
        pass
    candidates = [os.path.join(cgroup_root, g, "cpu.max") for g in _ancestors(groups.get("", "/"))]
    found = [q for q in map(_read_v2, candidates) if q is not False]
    if not found:  # no v2 cpu controller: v1
        folders = [os.path.join(cgroup_root, ctl, g) for ctl in ("cpu", "cpu,cpuacct", "cpuacct,cpu")
                   for g in _ancestors(groups.get("cpu", "/"))]
        found = [q for q in map(_read_v1, folders) if q is not False]
    quotas = [q for q in found if isinstance(q, int) and not isinstance(q, bool)]
    return min(quotas) if quotas else None


def usable_cpus(env: Mapping[str, str] | None = None, affinity: int | None = None, cgroup_root: str = CGROUP_ROOT,
                proc_cgroup: str = PROC_CGROUP) -> tuple[int, str]:
    """The CPUs this process may use and what limits them: the smallest of the affinity mask, SLURM's allotment
    and the cgroup quota."""
    env = os.environ if env is None else env
    limits = [(affinity if affinity is not None else affinity_cpus(), "affinity")]
    slurm = slurm_cpus(env)
    if slurm is not None:
        limits.append((slurm, "SLURM_CPUS_PER_TASK"))
    quota = cgroup_cpus(cgroup_root, proc_cgroup)
    if quota is not None:
        limits.append((quota, "cgroup quota"))
    return min(limits, key=lambda item: item[0])  # the first (affinity) wins a tie


def parse_setting(setting: Any) -> int | None:
    """``threads=auto`` -> None, ``threads=<n>`` -> n; anything else is a ValueError naming the key."""
    if str(setting).lower() == "auto":
        return None
    if isinstance(setting, bool) or not str(setting).strip().isdigit() or int(setting) < 1:
        raise ValueError(f"threads={setting!r} must be auto or an int >= 1 (the intra-op threads of each process)")
    return int(setting)


def choose_threads(setting: Any = "auto", workers: int = 0, processes: int = 1,
                   env: Mapping[str, str] | None = None, **cpu_sources: Any) -> ThreadChoice:
    """The thread count for ``threads=<setting>`` (``auto`` or an int >= 1) with ``workers`` DataLoader workers
    and ``processes`` training processes on this node; ``cpu_sources`` go to :func:`usable_cpus` (tests)."""
    env = os.environ if env is None else env
    workers, processes = max(0, int(workers)), max(1, int(processes))
    cpus, source = usable_cpus(env, **cpu_sources)
    fixed = parse_setting(setting)
    if fixed is not None:
        return ThreadChoice(fixed, cpus, "threads", workers, processes)
    omp = env.get("OMP_NUM_THREADS", "").strip()
    if omp.isdigit() and int(omp) > 0:
        return ThreadChoice(int(omp), cpus, "OMP_NUM_THREADS", workers, processes)
    return ThreadChoice(max(1, cpus // processes - workers), cpus, source, workers, processes)


def _processes_per_node(cfg: Any) -> int:
    """Training processes this node runs: ``trainer.devices`` when it is a count > 1 under a DDP strategy."""
    trainer, strategy = cfg.get("trainer") or {}, str((cfg.get("strategy") or {}).get("name", "auto"))
    devices = trainer.get("devices")
    if isinstance(devices, int) and devices > 1 and (strategy.startswith(("ddp", "fsdp")) or strategy == "auto"):
        return devices
    return 1


def apply_threads(cfg: Any, announce: bool = True, export: bool = True) -> ThreadChoice:
    """Set torch's intra-op threads for this run from ``cfg.threads`` (run.py before the task; the tests through
    the same function) and log the choice once (rank 0). ``export`` also sets ``OMP_NUM_THREADS`` so processes
    this one starts (DDP ranks, spawned workers) inherit the count instead of one thread per core."""
    import torch

    dataset = cfg.get("dataset") or {}
    choice = choose_threads(cfg.get("threads", "auto"), int(dataset.get("num_workers") or 0), _processes_per_node(cfg))
    torch.set_num_threads(choice.threads)
    if export:
        os.environ["OMP_NUM_THREADS"] = str(choice.threads)
    if announce and os.environ.get("RANK", "0") == "0" and os.environ.get("LOCAL_RANK", "0") == "0":
        log.info(choice.describe())
    return choice


def passive_wait(env: dict[str, str] | None = None) -> None:
    """OpenMP threads that sleep instead of spinning while they wait (``OMP_WAIT_POLICY=PASSIVE`` unless set): with
    another busy process, spinning threads take its core's time from the thread the next op waits for. Read once
    when torch loads OpenMP, so run.py calls this before importing torch."""
    (os.environ if env is None else env).setdefault("OMP_WAIT_POLICY", OMP_WAIT_POLICY)
