"""What ``run.py`` runs (the ``task=`` config group). Each task is a function ``fn(cfg) -> result`` named by
``conf/task/<name>.yaml``'s ``fn`` key.

Shared by every paper (this folder): ``train``, ``test`` (:mod:`tasks.evaluate`), ``summary``, ``export``,
``import_official``, ``fetch_weights`` and the ``studio`` (:mod:`tasks.studio`);
what they share is split by concern: :mod:`tasks.builders` (datamodule, callbacks, trainer), :mod:`tasks.run_logs`
(loggers and their bookkeeping), :mod:`tasks.resume` (the checkpoint a run resumes from) and :mod:`tasks.inference`
(the checkpoint of an inference task, the device, progress bars); :mod:`tasks.config` holds the start-up validation.
A paper's own tasks live in ``tasks/<paper>/``, for the four papers:

* pix2pixHD (docs/papers/pix2pixhd.md): ``pix2pixhd/cluster_features``, ``pix2pixhd/predict``, its export, official
  import and studio panel;
* Linear Style Transfer (docs/papers/lst.md): ``lst/stylize``, ``lst/stylize_video``, its export, official import and
  studio panel;
* Everybody Dance Now (docs/papers/edn.md): ``edn/extract_poses``, ``edn/transfer``, its official import;
* X2Face (docs/papers/x2face.md): ``x2face/crop_faces``, ``x2face/reenact``; its identity network ``face_id`` uses the
  shared tasks only.

Every task and the models it runs: docs/configuration.md.

Imports point one way: ``run.py -> tasks -> lightning_modules, datamodules -> networks, losses``.
"""
