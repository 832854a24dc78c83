"""What the classifier's parameters build for skorch: the network, the loss, the callbacks.

skorch's public hooks: ``initialize`` (this fit's seed, then skorch's initialization
under it), ``initialize_module`` (:class:`~hiercls.nn.fusion.FusionNet` from the
parameters that :mod:`hiercls.estimator.parameters` declares for it),
``initialize_criterion`` (the hierarchical or flat loss with the training class weights)
and ``get_default_callbacks`` (validation accuracy, task weights, early stopping).
"""

import numpy as np
from sklearn.utils import check_random_state

from ..features.radiomics.names import FEATURE_NAMES
from ..nn.backbones import backbone_data_config
from ..nn.loss import FlatLoss, HierarchicalLoss
from ..nn.seeding import seeded
from .callbacks import EarlyStoppingWithLoss, RecordTaskWeights, validation_accuracy
from .parameters import MODULE_ARGUMENTS, module_arguments


class NetworkMixin:
    """The module, criterion and callbacks of :class:`~hiercls.HierarchicalFusionClassifier`."""

    def initialize(self):
        # The one seed of this fit (weight init here, then shuffling, augmentation and the
        # validation split), drawn once from random_state.
        self.random_seed_ = (
            None if self.random_state is None
            else int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max)))
        if not hasattr(self, "radiomic_columns_"):
            # Initialized without fit (to load saved weights): the columns the parameter
            # names, unit class weights. What fit (or a model file) prepared is kept.
            self.radiomic_columns_ = (list(FEATURE_NAMES) if isinstance(self.radiomic_columns, str)
                                      else list(self.radiomic_columns))
        if not hasattr(self, "class_weights_"):
            self.class_weights_ = None
        if not hasattr(self, "adversary_domains_"):
            self.adversary_domains_ = None
        with seeded(self.random_seed_):
            return super().initialize()

    def initialize_module(self):
        params = module_arguments(self)
        overrides = self.get_params_for("module")
        clashes = [name for name in overrides if name in params or name in MODULE_ARGUMENTS]
        if clashes:
            # A module__ twin would silently win over the classifier's own parameter.
            raise ValueError("; ".join(
                f"module__{name} conflicts with the classifier's parameter "
                f"{MODULE_ARGUMENTS[name]!r}, which sets it: set "
                f"{MODULE_ARGUMENTS[name]} instead" for name in clashes))
        params.update(overrides)
        module = self.module(**params) if isinstance(self.module, type) else self.module
        self.module_ = module
        config = getattr(module, "data_config", None)
        if config is None:  # a custom module without one
            config = (backbone_data_config(module.image_encoder.backbone, self.pretrained)
                      if self.use_image else {})
        self.data_config_ = config
        return self

    def initialize_criterion(self):
        weights = self.class_weights_ or {}
        criterion = self.criterion
        if criterion is HierarchicalLoss and not self.hierarchical:
            # The default loss follows the flat ablation; a chosen subclass is kept.
            criterion = FlatLoss
        is_class = isinstance(criterion, type)
        if is_class and issubclass(criterion, HierarchicalLoss):
            defaults = {"tumor_weight": weights.get("tumor"), "viable_weight": weights.get("viable"),
                        "eta": self.eta}
        elif is_class and issubclass(criterion, FlatLoss):
            defaults = {"class_weight": weights.get("flat")}
        else:
            defaults = {}
        params = {**defaults, **self.get_params_for("criterion")}
        self.criterion_ = criterion(**params) if is_class else criterion
        return self

    def get_default_callbacks(self):
        callbacks = [(name, validation_accuracy() if name == "valid_acc" else callback)
                     for name, callback in super().get_default_callbacks()]
        if self.hierarchical:
            callbacks.insert(-1, ("task_weights", RecordTaskWeights()))
        if self.patience is not None and self.train_split:
            callbacks.insert(-1, ("early_stopping", EarlyStoppingWithLoss(
                monitor="valid_loss", patience=self.patience, load_best=True, sink=self._print)))
        return callbacks

    def _print(self, message):
        if self.verbose:
            print(message)
