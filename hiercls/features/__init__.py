"""What is computed from a tile before anything learns (scikit-learn transformers).

- :mod:`~hiercls.features.resolution`: the physical size of a pixel (``TileResampler``);
- :mod:`~hiercls.features.stain_normalization`: the stain of the training tiles
  (``StainNormalizer``);
- :mod:`~hiercls.features.radiomics`: the radiomic vector (``RadiomicsTransformer``);
- :mod:`~hiercls.features.frozen`: a frozen backbone's features of a tile's 8 views;
- :mod:`~hiercls.features.cache`: the on-disk cache both of these use;
- :mod:`~hiercls.features.perturbations`: stain, blur and JPEG perturbations of a tile
  (augmentation of the frozen views, robustness tests).
"""
