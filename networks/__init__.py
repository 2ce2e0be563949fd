"""Networks (plain ``nn.Module``s, no Lightning or Hydra). Shared building blocks: ``blocks`` (resnet blocks,
norm/padding layers), ``discriminators`` (n-layer and multi-scale PatchGAN), ``vgg`` (VGG-19 features),
``weights`` (reading weight files), ``label_encoding`` (one-hot labels, instance boundaries). Each paper's own
networks: ``networks.pix2pixhd``, ``networks.lst``. Import from those modules; this package lists no paper.
"""
