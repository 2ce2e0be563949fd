"""threads=auto: the intra-op thread count from what the process may use (affinity, SLURM, cgroup quota)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from datamodules.base import worker_init
from tasks.threads import apply_threads, cgroup_cpus, choose_threads, usable_cpus

NO_CGROUP = {"cgroup_root": "/nonexistent", "proc_cgroup": "/nonexistent"}


def _cgroup_v2(tmp_path: Path, files: dict[str, str], group: str = "/") -> dict[str, str]:
    root = tmp_path / "cg"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    proc = tmp_path / "proc_cgroup"
    proc.write_text(f"0::{group}\n")
    return {"cgroup_root": str(root), "proc_cgroup": str(proc)}


def test_affinity_limits_the_threads() -> None:
    choice = choose_threads("auto", env={}, affinity=3, **NO_CGROUP)
    assert (choice.threads, choice.source) == (3, "affinity")
    assert choice.describe() == "threads: 3 intra-op (affinity 3 CPUs, 0 DataLoader workers)"


def test_slurm_cpus_per_task_below_the_affinity_wins() -> None:
    choice = choose_threads("auto", env={"SLURM_CPUS_PER_TASK": "2"}, affinity=64, **NO_CGROUP)
    assert (choice.threads, choice.source) == (2, "SLURM_CPUS_PER_TASK")
    assert choose_threads("auto", env={"SLURM_CPUS_PER_TASK": "junk"}, affinity=4, **NO_CGROUP).threads == 4


def test_dataloader_workers_and_ddp_ranks_share_the_cpus() -> None:
    assert choose_threads("auto", workers=3, env={}, affinity=8, **NO_CGROUP).threads == 5
    assert choose_threads("auto", workers=4, env={}, affinity=2, **NO_CGROUP).threads == 1  # at least one
    assert choose_threads("auto", processes=2, env={}, affinity=8, **NO_CGROUP).threads == 4
    assert "2 processes, 1 DataLoader workers" in choose_threads("auto", 1, 2, env={}, affinity=8,
                                                                 **NO_CGROUP).describe()


def test_an_explicit_count_or_omp_num_threads_is_respected() -> None:
    assert choose_threads(5, env={"OMP_NUM_THREADS": "1"}, affinity=2, **NO_CGROUP).threads == 5
    omp = choose_threads("auto", env={"OMP_NUM_THREADS": "1"}, affinity=8, **NO_CGROUP)
    assert (omp.threads, omp.source) == (1, "OMP_NUM_THREADS")
    assert omp.describe().startswith("threads: 1 intra-op (OMP_NUM_THREADS=1")
    for bad in (0, -2, "many", True):
        with pytest.raises(ValueError, match="threads=.* must be auto or an int >= 1"):
            choose_threads(bad, env={}, affinity=2, **NO_CGROUP)


@pytest.mark.parametrize(("text", "cpus"), [("200000 100000", 2), ("150000 100000", 2), ("50000 100000", 1),
                                            ("max 100000", None), ("300000", 3)])
def test_cgroup_v2_cpu_max(tmp_path: Path, text: str, cpus: int | None) -> None:
    assert cgroup_cpus(**_cgroup_v2(tmp_path, {"cpu.max": text})) == cpus


def test_cgroup_v2_quota_of_an_enclosing_group_applies(tmp_path: Path) -> None:
    paths = _cgroup_v2(tmp_path, {"cpu.max": "max 100000", "job/cpu.max": "100000 100000",
                                  "job/step/cpu.max": "max 100000"}, group="/job/step")
    assert cgroup_cpus(**paths) == 1
    choice = choose_threads("auto", env={}, affinity=16, **paths)
    assert (choice.threads, choice.source) == (1, "cgroup quota")


def test_cgroup_v1_cfs_quota(tmp_path: Path) -> None:
    root = tmp_path / "cg" / "cpu,cpuacct" / "docker"
    root.mkdir(parents=True)
    (root / "cpu.cfs_quota_us").write_text("400000\n")
    (root / "cpu.cfs_period_us").write_text("100000\n")
    proc = tmp_path / "proc_cgroup"
    proc.write_text("4:memory:/docker\n2:cpu,cpuacct:/docker\n0::/\n")
    assert cgroup_cpus(str(tmp_path / "cg"), str(proc)) == 4
    (root / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpus(str(tmp_path / "cg"), str(proc)) is None


def test_this_machine_gives_at_least_one_thread() -> None:
    cpus, source = usable_cpus()
    assert cpus >= 1 and source


def test_apply_sets_torch_and_a_worker_runs_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("PL_SEED_WORKERS", raising=False)
    try:
        choice = apply_threads({"threads": 2, "dataset": {"num_workers": 0}}, announce=False, export=False)
        assert choice.threads == 2 and torch.get_num_threads() == 2
        worker_init(0)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_the_loaders_of_a_datamodule_with_workers_use_worker_init() -> None:
    from datamodules.pix2pixhd.datamodule import Pix2PixHDDataModule

    assert Pix2PixHDDataModule(num_train=2, num_workers=1).train_dataloader().worker_init_fn is worker_init
    assert Pix2PixHDDataModule(num_train=2, num_workers=0).train_dataloader().worker_init_fn is None
