"""What learns, in plain PyTorch: no scikit-learn or skorch in this layer.

- :mod:`~hiercls.nn.backbones`: timm backbones and offline weights;
- :mod:`~hiercls.nn.partial_finetune`: a backbone cut before its last stages, which train
  on the cached maps of the frozen trunk;
- :mod:`~hiercls.nn.fusion`: the gated image + radiomics network (``FusionNet``);
- :mod:`~hiercls.nn.loss`: the hierarchical and flat losses;
- :mod:`~hiercls.nn.augmentation`, :mod:`~hiercls.nn.stain_jitter`: training-time augmentation.
"""
