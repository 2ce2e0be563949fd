"""Data of every paper: a small shared base (``base.BaseDataModule``: argument checks, loaders), shared reading and
transforms (``transforms``, ``paired_files``), sample grids (``visualize``), atomic writes (``files``), and one
package per paper with its datamodule and datasets: ``datamodules.pix2pixhd`` (label/instance maps -> photos),
``datamodules.lst`` (content/style pairs). Import from those modules; this package lists no paper.
"""
