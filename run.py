"""condsynth's one entrypoint: compose the config, seed, validate, and run the chosen task.

    python run.py                                  # pix2pixHD, stage global, synthetic scenes, small sizes
    python run.py stage=local stage.init_from=outputs/runs/pix2pixhd_global/<time>/checkpoints/last.ckpt
    python run.py task=summary model=pix2pixhd stage=local dataset=cityscapes size=paper
    python run.py -m model.optim.lr=1e-4,2e-4      # a sweep; add hydra/launcher=slurm for a cluster
"""

from __future__ import annotations

import logging
from typing import Any

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig

from tasks.config import register_resolvers, validate_config

register_resolvers()
log = logging.getLogger("condsynth")


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> Any:
    validate_config(cfg)
    pl.seed_everything(int(cfg.seed), workers=True)
    task = hydra.utils.get_method(cfg.task.fn)
    return task(cfg)


if __name__ == "__main__":
    main()
