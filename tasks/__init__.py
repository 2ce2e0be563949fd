"""What ``run.py`` runs (the ``task=`` config group). Each task is a function ``fn(cfg) -> result`` named by
``conf/task/<name>.yaml``'s ``fn`` key.

Shared by every paper (this folder): ``train``, ``test`` (:mod:`tasks.evaluate`), ``summary``;
:mod:`tasks.common` holds what they share (building the module, data, trainer and loggers; loading checkpoints;
picking the device) and :mod:`tasks.config` the start-up validation.
A paper's own tasks live in ``tasks/<paper>/``: ``pix2pixhd/cluster_features``, ``pix2pixhd/predict``, ``lst/stylize``,
``lst/stylize_video``, ``lst/export``.

Imports point one way: ``run.py -> tasks -> lightning_modules, datamodules -> networks, losses``.
"""
