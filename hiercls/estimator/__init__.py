"""The network as a scikit-learn estimator (through skorch), and the pipeline around it.

- :mod:`~hiercls.estimator.classifier`: ``HierarchicalFusionClassifier``;
- :mod:`~hiercls.estimator.tile_dataset`, :mod:`~hiercls.estimator.splits`,
  :mod:`~hiercls.estimator.callbacks`: what it feeds skorch;
- :mod:`~hiercls.estimator.pipeline`: ``make_fusion_pipeline`` (and ``resolve_params``, the
  parameters it sets for a preset);
- :mod:`~hiercls.estimator.ensemble`: ``SeedEnsemble``, one estimator fitted with several seeds.
"""
