"""Tiny Everybody Dance Now overrides shared by the EDN tests (32x64 frames, 16x32 in stage global, random VGG)."""

from __future__ import annotations

TINY_EDN = [
    "model=edn",
    "size=demo",
    "dataset.num_val=1",
    "dataset.num_test=2",
    "trainer=debug",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "callbacks.sample_grid.every_n_steps=1",
    "logger=csv",
    "dataset.image_size=[32,64]",
    "dataset.num_train=4",
    "model.size_multiple=8",
    "model.networks.global.ngf=4",
    "model.networks.global.n_downsampling=2",
    "model.networks.global.n_blocks=1",
    "model.networks.local.ngf=2",              # G1 inside the local enhancer gets 2 * 2 = global ngf
    "model.networks.local.n_blocks_local=1",
    "model.networks.discriminator.ndf=4",
    "model.networks.discriminator.n_layers=2",
    "model.networks.face_generator.ngf=4",
    "model.networks.face_generator.n_downsampling=1",
    "model.networks.face_generator.n_blocks=1",
    "model.networks.face_discriminator.ndf=4",
    "model.networks.face_discriminator.n_layers=1",
    "model.losses.frame.perceptual.vgg.weights=null",
    "model.losses.face.perceptual.vgg.weights=null",   # VGG up to relu3_1 (size=demo): 2x2 on the 8x8 face crops
]
