"""What ``run.py`` runs (the ``task=`` config group). Each task is a function ``fn(cfg) -> result`` named by
``conf/task/<name>.yaml``'s ``fn`` key.

Shared by every paper (this folder): ``train``, ``test`` (:mod:`tasks.evaluate`), ``summary``;
what they share is split by concern: :mod:`tasks.builders` (datamodule, callbacks, trainer), :mod:`tasks.run_logs`
(loggers and their bookkeeping), :mod:`tasks.resume` (the checkpoint a run resumes from) and :mod:`tasks.inference`
(the checkpoint of an inference task, the device, progress bars); :mod:`tasks.config` holds the start-up validation.
A paper's own tasks live in ``tasks/<paper>/``: ``pix2pixhd/cluster_features``, ``pix2pixhd/predict``, ``lst/stylize``,
``lst/stylize_video``, ``lst/export``.

Imports point one way: ``run.py -> tasks -> lightning_modules, datamodules -> networks, losses``.
"""
