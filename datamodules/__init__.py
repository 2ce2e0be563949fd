"""Data of every paper: a small shared base (``base.BaseDataModule``: argument checks, loaders, the bad-file scan),
shared reading and transforms (``transforms``, ``paired_files``), sample grids (``image_grids``), atomic writes
(``atomic_writes``), video frames in and out (``video``), and one package per paper with its datamodule and
datasets (synthetic data first):

* ``datamodules.pix2pixhd``: pix2pixHD's label/instance maps -> photos (docs/papers/pix2pixhd.md);
* ``datamodules.lst``: Linear Style Transfer's content/style pairs (docs/papers/lst.md);
* ``datamodules.edn``: Everybody Dance Now's poses and frame pairs (docs/papers/edn.md);
* ``datamodules.x2face``: X2Face's face videos, and their identities for ``face_id`` (docs/papers/x2face.md).

Import from those modules; this package imports no paper.
"""
