"""condsynth studio (``python run.py task=studio task.ckpt_path=...``): a local web page over trained checkpoints.

The server (:mod:`tasks.studio.app`) is model-agnostic: it loads each checkpoint once (:mod:`tasks.studio.models`),
keeps one scene state per browser session (:mod:`tasks.studio.sessions`), runs every model call on one worker
thread (:mod:`tasks.studio.worker`) and hands the routes of ``/api/<model>/...`` to the model's panel
(:class:`tasks.studio.panels.Panel`; pix2pixHD: ``tasks/pix2pixhd/studio.py``, LST: ``tasks/lst/studio.py``),
chosen by ``task.panels`` in ``conf/task/studio.yaml``.
"""
