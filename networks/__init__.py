"""Networks (plain ``nn.Module``s, no Lightning or Hydra). Shared building blocks: ``blocks`` (resnet blocks,
norm/padding layers), ``discriminators`` (n-layer and multi-scale PatchGAN), ``vgg`` (VGG-19 features),
``weights`` (reading weight files), ``label_encoding`` (one-hot labels, instance boundaries). Each paper's own
networks: ``networks.pix2pixhd`` (pix2pixHD, docs/papers/pix2pixhd.md), ``networks.lst`` (Linear Style Transfer,
docs/papers/lst.md), ``networks.edn`` (Everybody Dance Now, docs/papers/edn.md), ``networks.x2face`` (X2Face and the
``face_id`` identity network, docs/papers/x2face.md); the official weights' key tables: ``official``,
``pix2pixhd_official``, ``lst_official``. Import from those modules; this package imports no paper.
"""
