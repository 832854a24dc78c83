"""HierarchicalFusionClassifier: the fusion network as a skorch/scikit-learn classifier."""

import contextlib
import re
from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch
from skorch import NeuralNetClassifier
from skorch.utils import is_dataset, to_numpy, to_tensor
from sklearn.utils import check_random_state
from sklearn.utils.metadata_routing import MethodMapping

from ..nn.backbones import backbone_data_config
from ..features.cache import resolve_cache_dir
from .callbacks import EarlyStoppingWithLoss, RecordTaskWeights, validation_accuracy
from ..features.frozen import FrozenFeatures
from ..data.images import check_image_frame
from ..data.labels import encode_labels, tumor_target, viable_target
from ..nn.loss import FlatLoss, HierarchicalLoss, inverse_frequency_weights
from ..nn.fusion import FusionNet, class_probabilities
from ..nn.seeding import seeded
from ..features.radiomics.names import FEATURE_NAMES, RADIOMIC_COLUMN_PATTERN
from .parameters import (CACHE_KEY, MODULE_ARGUMENTS, check_parameters, check_predict_views,
                         module_arguments, parameter_constraints, restore_defaults)
from .splits import GroupedValidSplit
from .tile_dataset import TileDataset


def resolve_device(device):
    """``"auto"`` becomes ``"cuda"`` where CUDA is available and ``"cpu"`` elsewhere."""
    if isinstance(device, str) and device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def find_radiomic_columns(X):
    """The columns of ``X`` whose names are radiomic feature names."""
    pattern = re.compile(RADIOMIC_COLUMN_PATTERN)
    return [str(column) for column in X.columns if pattern.match(str(column))]


class HierarchicalFusionClassifier(NeuralNetClassifier):
    """Gated fusion of a timm image backbone and radiomics, with a hierarchical loss.

    A skorch :class:`~skorch.NeuralNetClassifier` whose module is
    :class:`hiercls.nn.fusion.FusionNet` and whose criterion is
    :class:`hiercls.nn.loss.HierarchicalLoss`. It takes a DataFrame with one row per tile:
    an ``image`` column (file paths or RGB arrays) and the (standardized) radiomic
    columns that :class:`~hiercls.RadiomicsTransformer` adds. ``predict_proba`` is the
    factorization ``[pA0, pA1 * pB0, pA1 * pB1]`` of the two heads' probabilities, in the
    class order Non-Tumor, Non-Viable-Tumor, Viable-Tumor.

    Parameters
    ----------
    backbone : str, default="efficientnet_b0"
        timm model name (the paper compares ``inception_v3``, a ViT and ``efficientnet_b0``).
    pretrained : bool, str or path, default=False
        False (random init), True (timm's hub), a path to a local state dict, or a named
        offline source; see :func:`hiercls.nn.backbones.create_backbone`.
    embed_dim : int, default=256
        Width ``d`` of the image and radiomic embeddings.
    hierarchical : bool, default=True
        False trains the flat 3-class ablation (weighted cross-entropy).
    use_image, use_radiomics : bool, default=True
        The modality ablations: image only (``use_radiomics=False``) or radiomics only
        (``use_image=False``).
    radiomic_columns : "auto" or list of str, default="auto"
        "auto" takes the columns named like radiomic features (``firstorder_Mean``,
        ``tissue__shape2D_Perimeter``).
    image_size : int or None, default=None
        Side the tiles are resized to; None takes the backbone's input size.
    augment : bool, default=True
        Random horizontal flips and rotations within +-15 degrees during training.
    stain_jitter : float, default=0.0
        Strength of a random jitter of each tile's hematoxylin and eosin densities
        (:func:`hiercls.nn.stain_jitter.hed_jitter`; 0.05 is "HED-light"), against stain shifts
        between patients and labs; 0 is off, as in the paper. With ``augment`` it jitters
        training batches; with ``freeze_backbone`` each cached view gets its own fixed
        jitter.
    view_blur : float, default=0.0
        With ``freeze_backbone``, each cached view is blurred with a Gaussian of sigma
        ``~ U(0, view_blur)`` pixels at ``image_size``
        (:func:`hiercls.features.perturbations.gaussian_blur`), against scans out of
        focus; drawn per view from the tile's content like the stain jitter. 0 is off.
    view_jpeg : int or None, default=None
        With ``freeze_backbone``, each cached view is re-compressed as JPEG at a quality
        ``~ U{view_jpeg..95}`` (:func:`hiercls.features.perturbations.jpeg_recompress`),
        against compression artefacts; drawn like ``view_blur``. None is off.
    freeze_backbone : bool, default=False
        Keep the backbone's weights fixed and train the rest on its cached features of
        each tile's 8 symmetric views (flips and 90-degree rotations): one view drawn per
        tile and epoch in training, their mean in prediction. Epochs then cost little,
        which makes CPU training practical; use it with pretrained weights.
    backbone_stages : int, default=1
        How many of the backbone's feature stages its image features come from: 1 is its
        pooled last-stage features; ``k > 1`` appends the global-average-pooled outputs of
        the ``k - 1`` stages before the last (mid-level texture;
        :class:`hiercls.nn.backbones.StagePooledBackbone`), frozen or trained.
    finetune_stages : int, default=0
        With ``freeze_backbone``, train the backbone's last ``k`` stages and its head
        anyway, on cached feature maps of the frozen stages before them: a middle way
        between a frozen and a fully fine-tuned backbone at a few milliseconds per tile
        and epoch on a CPU (:mod:`hiercls.nn.partial_finetune`; timm's EfficientNet and
        MobileNetV3 families, not with ``backbone_stages > 1``). Those stages' batch norms
        keep their pretrained statistics. Give them their own learning rate with
        skorch's param groups, e.g.
        ``optimizer__param_groups=[("image_encoder.backbone.*", {"lr": 1e-4})]``. 0 is off.
    predict_views : {1, 2, 4, 8}, default=8
        With ``freeze_backbone``, how many of the 8 symmetric views are averaged in
        prediction (``predict_proba``, ``predict``, ``gate_weights``; validation during
        ``fit`` keeps all 8): 1 the tile as it is, 2 with its mirror image, 4 with the
        half-turns of both, 8 all (the paper's test-time averaging). Fewer views cost
        proportionally less backbone time on tiles not yet cached.
    cache : "auto", path or None, default="auto"
        Where a frozen pretrained backbone's features are kept between fits (keyed by
        tile content, backbone, weights and preprocessing); None keeps them in memory.
    eta : float, default=0.2
        Weight of the log-variance regularizer in the loss.
    lr : float, default=1e-4
        AdamW's learning rate; weight decay is ``optimizer__weight_decay`` (1e-4).
    batch_size : int, default=16
    max_epochs : int, default=10
    patience : int or None, default=5
        Early stopping on the validation loss, restoring the best epoch's weights, the
        network's and the loss's learned task weights alike; None turns it off.
    train_split : callable or None, default=GroupedValidSplit(0.2)
        The internal validation split. When ``fit`` gets ``groups`` it holds out whole
        patients, else tiles; in a Pipeline or search ``groups`` reaches ``fit`` only by
        ``classifier__groups`` or metadata routing (docs/grid-search.md). None trains on
        everything (and disables early stopping).
    device : str, default="auto"
        "auto" uses CUDA where available, else the CPU (see ``device_``).
    random_state : int, RandomState or None, default=None
        Seeds weight initialization, shuffling, augmentation and the validation split;
        two fits with the same seed on the CPU give identical models, also when they run
        in two threads: fits in one process take turns under a lock, since torch's global
        generator they seed is shared by all threads (:mod:`hiercls.nn.seeding`) (docs/reproducibility.md).
    verbose : int, default=1
        Print one line per epoch; 0 is silent.
    **kwargs
        Any other skorch parameter (``optimizer__weight_decay``, ``callbacks``,
        ``iterator_train__num_workers``, ...). ``module__`` parameters that the
        classifier sets from its own (``module__embed_dim`` for ``embed_dim``, ...) are
        rejected; the criterion's class weights and ``eta`` go to ``HierarchicalLoss``
        (``FlatLoss``) and their subclasses unless ``criterion__`` parameters set them.

    Attributes
    ----------
    classes_ : ndarray of shape (3,)
        The three classes in the form ``y`` had in ``fit`` (codes or names).
    radiomic_columns_ : list of str
        The radiomic columns used.
    class_weights_ : dict
        ``{"tumor": [w_non_tumor, w_tumor], "viable": [w_non_viable, w_viable],
        "flat": [w0, w1, w2]}``: inverse training counts, unit mean; None (unit weights)
        when the classifier was initialized without ``fit``.
    device_ : str or torch.device
        The device the network and the batches are on: ``device`` with ``"auto"``
        resolved, when the classifier is initialized (``device`` itself stays ``"auto"``).
    task_weights_ : ndarray of shape (2,)
        The learned ``(exp(-lA), exp(-lB))`` of the hierarchical loss.
    data_config_ : dict
        The backbone's input size, mean, std and interpolation.
    history_ : skorch History
        Per-epoch losses, validation accuracy and task weights.
    random_seed_ : int or None
        The seed drawn from ``random_state`` for this fit (None without one).
    module_ : FusionNet
        The trained network.
    criterion_ : HierarchicalLoss or FlatLoss
        The loss, holding the learned log-variances.

    See Also
    --------
    hiercls.make_fusion_pipeline : radiomics, standardization and this classifier.

    Examples
    --------
    A tiny network (timm's ``test_efficientnet``) on a few generated tiles, one epoch:

    >>> from hiercls import HierarchicalFusionClassifier, RadiomicsTransformer
    >>> from hiercls.data.datasets import make_synthetic_tiles
    >>> X, y, groups = make_synthetic_tiles(n_tiles=12, n_patients=2, size=32, random_state=0)
    >>> X = RadiomicsTransformer(mask="full", cache=None, verbose=0).fit_transform(X)
    >>> clf = HierarchicalFusionClassifier(
    ...     backbone="test_efficientnet", image_size=32, embed_dim=16, max_epochs=1,
    ...     train_split=None, verbose=0, random_state=0).fit(X, y)
    >>> clf.classes_
    array([0, 1, 2])
    >>> proba = clf.predict_proba(X)
    >>> proba.shape, bool(abs(proba.sum(axis=1) - 1).max() < 1e-6)
    ((12, 3), True)
    """

    #: Each parameter's rule, from the one declaration (:mod:`hiercls.estimator.parameters`).
    _parameter_constraints = parameter_constraints()

    def __init__(self, backbone="efficientnet_b0", *, pretrained=False, embed_dim=256,
                 hierarchical=True, use_image=True, use_radiomics=True, radiomic_columns="auto",
                 image_size=None, augment=True, stain_jitter=0.0, view_blur=0.0, view_jpeg=None,
                 freeze_backbone=False, predict_views=8, backbone_stages=1, finetune_stages=0,
                 cache="auto", eta=0.2,
                 lr=1e-4, batch_size=16, max_epochs=10,
                 patience=5, train_split=GroupedValidSplit(0.2), device="auto", random_state=None,
                 verbose=1, module=FusionNet, criterion=HierarchicalLoss,
                 optimizer=torch.optim.AdamW, **kwargs):
        kwargs.setdefault("optimizer__weight_decay", 1e-4)
        kwargs.setdefault("iterator_train__shuffle", True)
        super().__init__(module, criterion=criterion, optimizer=optimizer, lr=lr,
                         batch_size=batch_size, max_epochs=max_epochs, train_split=train_split,
                         device=device, verbose=verbose, **kwargs)
        self.backbone = backbone
        self.pretrained = pretrained
        self.embed_dim = embed_dim
        self.hierarchical = hierarchical
        self.use_image = use_image
        self.use_radiomics = use_radiomics
        self.radiomic_columns = radiomic_columns
        self.image_size = image_size
        self.augment = augment
        self.stain_jitter = stain_jitter
        self.view_blur = view_blur
        self.view_jpeg = view_jpeg
        self.freeze_backbone = freeze_backbone
        self.predict_views = predict_views
        self.backbone_stages = backbone_stages
        self.finetune_stages = finetune_stages
        self.cache = cache
        self.eta = eta
        self.patience = patience
        self.random_state = random_state

    # --- device "auto" --------------------------------------------------------------
    # The parameter `device` keeps the user's value ("auto" too); `device_` is what it
    # resolves to, once, when the net is initialized or unpickled. skorch reads `device`
    # where it places the modules (initialize), loads parameters and unpickles: those
    # public entry points run with `device` resolved to `device_`, and give the user's
    # value back after. Batches go to `device_` in the overridden public hooks
    # (infer, get_loss); predictions take an explicit device.
    @contextlib.contextmanager
    def _device_resolved(self):
        requested = self.device
        self.device = self.device_
        try:
            yield
        finally:
            self.device = requested

    def set_params(self, **params):
        if not hasattr(self, "device_"):
            return super().set_params(**params)
        # An initialized net re-initializes what the parameters change (skorch places
        # the rebuilt modules on `device`).
        requested = params.get("device", self.device)
        self.device_ = resolve_device(requested)
        if "device" in params:
            params = {**params, "device": self.device_}
        with self._device_resolved():
            super().set_params(**params)
        self.device = requested
        return self

    def __setstate__(self, state):
        requested = state["device"]
        restore_defaults(state)  # models saved before a parameter existed
        state["device"] = resolve_device(requested)
        super().__setstate__(state)
        # skorch maps a CUDA net onto the CPU where CUDA is missing: device_ is where
        # the tensors now are.
        self.device_ = self.device
        self.device = requested

    def initialize(self):
        # The one seed of this fit (weight init here, then shuffling, augmentation and the
        # validation split), drawn once from random_state.
        self.random_seed_ = (
            None if self.random_state is None
            else int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max)))
        self.device_ = resolve_device(self.device)
        if not hasattr(self, "radiomic_columns_"):
            # Initialized without fit (to load saved weights): the columns the parameter
            # names, unit class weights. What fit (or a model file) prepared is kept.
            self.radiomic_columns_ = (list(FEATURE_NAMES) if isinstance(self.radiomic_columns, str)
                                      else list(self.radiomic_columns))
        if not hasattr(self, "class_weights_"):
            self.class_weights_ = None
        with seeded(self.random_seed_), self._device_resolved():
            return super().initialize()

    def load_params(self, f_params=None, f_optimizer=None, f_criterion=None, f_history=None,
                    checkpoint=None, use_safetensors=False, **kwargs):
        """skorch's ``load_params``, the tensors mapped onto ``device_``.

        The arguments are skorch's; other modules' files are ``f_<module>``.
        """
        unknown = [key for key in kwargs if not key.startswith("f_")]
        if unknown:
            raise TypeError(f"load_params got unexpected argument(s) {unknown}; expected "
                            "f_params, f_optimizer, f_criterion, f_history or f_<module>")
        if checkpoint is not None and not self.initialized_:
            self.initialize()
        with self._device_resolved():
            return super().load_params(f_params=f_params, f_optimizer=f_optimizer,
                                       f_criterion=f_criterion, f_history=f_history,
                                       checkpoint=checkpoint, use_safetensors=use_safetensors,
                                       **kwargs)

    def infer(self, x, groups=None, **fit_params):
        # skorch hands every fit parameter to the module's forward as well; the patients
        # are for the split only.
        x = to_tensor(x, device=self.device_)
        if isinstance(x, Mapping):
            clashes = sorted(set(x) & set(fit_params))
            if clashes:
                raise ValueError(f"X and fit_params contain duplicate keys: {', '.join(clashes)}")
            return self.module_(**x, **fit_params)
        return self.module_(x, **fit_params)

    # --- callbacks -----------------------------------------------------------------
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

    # --- validation ----------------------------------------------------------------
    def _check_frame(self, X, *, fitting):
        if self.use_image:
            check_image_frame(X)
        elif not isinstance(X, pd.DataFrame):
            raise TypeError(f"X must be a pandas DataFrame; got {type(X).__name__}")
        if not self.use_radiomics:
            return X
        self._check_radiomics(X, self._fit_radiomic_columns(X) if fitting
                              else self.radiomic_columns_)
        return X

    def _fit_radiomic_columns(self, X):
        columns = (find_radiomic_columns(X) if isinstance(self.radiomic_columns, str)
                   and self.radiomic_columns == "auto" else list(self.radiomic_columns))
        if self.use_radiomics and not columns:
            raise ValueError(
                "X has no radiomic columns (names like 'firstorder_Mean'); put a "
                "RadiomicsTransformer before the classifier (see make_fusion_pipeline) "
                "or set use_radiomics=False"
            )
        return columns

    def _check_radiomics(self, X, columns):
        missing = [c for c in columns if c not in X.columns]
        if missing:
            raise ValueError(f"X lacks the radiomic columns {missing[:5]} seen in fit")
        values = X[columns]
        non_numeric = [c for c in values.columns if not pd.api.types.is_numeric_dtype(values[c])]
        if non_numeric:
            raise ValueError(f"radiomic columns must be numeric; {non_numeric[:5]} are not")
        nan_counts = values.isna().sum()
        if nan_counts.any():
            bad = nan_counts[nan_counts > 0]
            raise ValueError(
                f"radiomic columns contain NaN: {dict(bad.head(5))} (column: rows); impute or "
                "drop those tiles before fitting or predicting"
            )
        return X

    def fit(self, X, y, groups=None, **fit_params):
        """Train on a DataFrame of tiles.

        Parameters
        ----------
        X : DataFrame
            ``image`` column and radiomic columns.
        y : array-like of shape (n_samples,)
            0/1/2 or the class names; at least two classes.
        groups : array-like of shape (n_samples,), optional
            Patient of each tile; the internal validation split then holds out whole
            patients. Inside a Pipeline pass it as ``classifier__groups``, or request it
            with metadata routing (``set_fit_request(groups=True)``): a
            ``GridSearchCV(...).fit(X, y, groups=groups)`` alone gives the patients to
            the search's splitter only, and the validation split then draws tiles.
        **fit_params
            Passed on to skorch's ``fit``.

        Returns
        -------
        self : HierarchicalFusionClassifier
        """
        return self._train(X, y, groups, fit_params,
                           fresh=not self.warm_start or not self.initialized_)

    def partial_fit(self, X, y=None, classes=None, groups=None, **fit_params):
        """Train ``max_epochs`` more epochs, without re-initializing a fitted network.

        On a fresh classifier this is :meth:`fit`: the same checks, class weights,
        radiomic columns and seeding. On a fitted one the network, its class weights and
        radiomic columns are kept, and the data is checked against them.

        Parameters
        ----------
        X, y, groups, **fit_params
            As in :meth:`fit`.
        classes : ignored
            For scikit-learn's ``partial_fit`` signature; the classes are always the three.

        Returns
        -------
        self : HierarchicalFusionClassifier
        """
        return self._train(X, y, groups, fit_params, fresh=not self.initialized_)

    def _train(self, X, y, groups, fit_params, *, fresh):
        # The one path of fit and partial_fit: prepare (the fitted attributes on fresh
        # fits only), initialize on fresh fits, train.
        y_values, fit_params = self._prepare(X, y, groups, fit_params, fresh=fresh)
        if fresh:
            self.initialize()
        seed = self.random_seed_
        if seed is not None and not fresh:
            # A later partial_fit draws afresh, reproducibly.
            seed += len(self.history_)
        with seeded(seed):
            super().partial_fit(X, y_values, **fit_params)
        return self

    def _prepare(self, X, y, groups, fit_params, *, fresh):
        """Check parameters (fresh fits) and data; set radiomic_columns_ and
        class_weights_ (fresh fits). Returns the labels for skorch and the fit
        parameters, the patients among them: skorch hands those to get_split_datasets."""
        if fresh:
            check_parameters(self)
        if y is None:
            raise ValueError("y is required to fit HierarchicalFusionClassifier")
        self._check_frame(X, fitting=fresh)
        codes, _ = encode_labels(y)
        if len(codes) != len(X):
            raise ValueError(f"y has {len(codes)} labels; expected one per row of X ({len(X)})")
        if groups is not None:
            groups = np.asarray(groups)
            if len(groups) != len(codes):
                raise ValueError(
                    f"groups has {len(groups)} entries; expected one per row of X ({len(X)})")
            fit_params = {**fit_params, "groups": groups}
        if fresh:
            present = np.unique(codes)
            if len(present) < 2:
                raise ValueError(
                    f"y contains a single class ({present[0]}); expected at least two of the "
                    "classes 0 (Non-Tumor), 1 (Non-Viable-Tumor), 2 (Viable-Tumor)"
                )
            self.radiomic_columns_ = self._fit_radiomic_columns(X)
            self.class_weights_ = {
                "tumor": inverse_frequency_weights(tumor_target(codes), 2),
                "viable": inverse_frequency_weights(viable_target(codes)[tumor_target(codes) == 1], 2),
                "flat": inverse_frequency_weights(codes, 3),
            }
        y_values = y.to_numpy() if isinstance(y, pd.Series) else np.asarray(y)
        return y_values, fit_params

    def check_data(self, X, y):
        if y is None:
            raise ValueError("y is required to fit HierarchicalFusionClassifier")
        # All three classes, in the form y uses, even when a fold lacks one.
        self.classes_inferred_ = encode_labels(y)[1]

    # --- skorch hooks --------------------------------------------------------------
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

    def get_params_for(self, prefix):
        params = super().get_params_for(prefix)
        if prefix == "iterator_valid":
            # A DataLoader draws a seed from torch's global generator each time it is
            # iterated, even unshuffled; validation and prediction take their own, so a
            # prediction never disturbs a seeded fit running in another thread.
            params.setdefault("generator", torch.Generator())
        return params

    def get_all_learnable_params(self):
        # Frozen backbone weights never get a gradient; leaving them out of the optimizer
        # spares it a loop over hundreds of tensors per step.
        for name, parameter in super().get_all_learnable_params():
            if parameter.requires_grad:
                yield name, parameter

    def get_split_datasets(self, X, y=None, groups=None, **fit_params):
        # `groups` arrives by either route: as a fit parameter (``classifier__groups``), or
        # routed to the split (``set_fit_request(groups=True)``, see get_metadata_routing).
        dataset = self.get_dataset(X, y)
        if not self.train_split:
            return dataset, None
        if isinstance(self.train_split, GroupedValidSplit):
            return self.train_split(dataset, y, groups=groups, random_state=self.random_seed_)
        if groups is not None:
            fit_params = {"groups": groups, **fit_params}
        return self.train_split(dataset, y, **fit_params)

    def get_metadata_routing(self):
        """Metadata routing: the internal split gets ``groups`` when ``fit`` requests them.

        Under routing skorch hands its split only what the split is routed, so the split
        joins the router, but only after ``set_fit_request(groups=True)``: with
        ``groups=False`` the patients go nowhere and the split draws tiles.
        """
        router = super().get_metadata_routing()
        if (isinstance(self.train_split, GroupedValidSplit)
                and router.consumes(method="fit", params={"groups"})):
            router.add(splitter=self.train_split, method_mapping=MethodMapping()
                       .add(caller="fit", callee="split").add(caller="partial_fit", callee="split"))
        return router

    def get_dataset(self, X, y=None, *, predict_views=None):
        """skorch's hook: X as a TileDataset. ``predict_views`` (prediction only) picks the
        frozen backbone's views to average; training and validation take all 8."""
        if is_dataset(X):
            return X
        self._check_frame(X, fitting=False)
        config = self.data_config_
        options = dict(
            image_size=self.image_size or (config["input_size"][-1] if config else 224),
            mean=config.get("mean", (0.5,) * 3), std=config.get("std", (0.5,) * 3),
            interpolation=config.get("interpolation", "bilinear"),
        )
        image_features = None
        if self.use_image and self.freeze_backbone:
            encoder = self.module_.image_encoder
            # The module's own finetune_stages: set_params after fit must not file its
            # outputs under another key.
            key = {**{name: getattr(self, name) for name in CACHE_KEY},
                   "finetune_stages": getattr(encoder, "finetune_stages", 0)}
            frozen = FrozenFeatures(resolve_cache_dir(self.cache), **key, data_config=options,
                                    device=self.device_, verbose=self.verbose)
            # What is cached: the backbone's pooled features, or its trunk's maps (a
            # custom encoder without cached_part caches its backbone's).
            part = encoder.cached_part() if hasattr(encoder, "cached_part") else encoder.backbone
            image_features = frozen.compute(part, TileDataset(X, use_radiomics=False, **options),
                                            predict_views=predict_views)
        return TileDataset(
            X, y, radiomic_columns=self.radiomic_columns_ if self.use_radiomics else (),
            use_image=self.use_image, use_radiomics=self.use_radiomics,
            image_features=image_features, **options,
        )

    def _prediction_dataset(self, X):
        # predict_views may have been set (set_params) after fit: checked here.
        return self.get_dataset(X, predict_views=check_predict_views(self))

    def get_loss(self, y_pred, y_true, X=None, training=False):
        logits = y_pred[0] if isinstance(y_pred, tuple) else y_pred
        return self.criterion_(logits, to_tensor(y_true, device=self.device_))

    def _nonlinearity(self):
        # skorch's predict_nonlinearity parameter: "auto" is the hierarchy's factorization.
        chosen = self.predict_nonlinearity
        if isinstance(chosen, str) and chosen == "auto":
            return class_probabilities
        return chosen if chosen is not None else (lambda logits: logits)

    # --- predictions ---------------------------------------------------------------
    def predict_proba(self, X):
        """Class probabilities, columns Non-Tumor, Non-Viable-Tumor, Viable-Tumor.

        Returns
        -------
        proba : ndarray of shape (n_samples, 3), rows summing to one
        """
        self.check_is_fitted()
        nonlinearity = self._nonlinearity()
        dataset = self._prediction_dataset(X)
        # device given: the scoring callbacks' cached forward_iter would default to
        # `device`, which may be "auto".
        probas = [to_numpy(nonlinearity(output[0] if isinstance(output, tuple) else output))
                  for output in self.forward_iter(dataset, training=False, device="cpu")]
        return np.concatenate(probas, 0)

    def predict(self, X):
        """The most probable class of each tile, in the form of ``classes_``."""
        codes = self.predict_proba(X).argmax(axis=1)
        return self.classes_[codes]

    def gate_weights(self, X):
        """Each tile's gate weights.

        Returns
        -------
        weights : DataFrame of shape (n_samples, 2)
            Columns ``image`` (a_img) and ``radiomics`` (a_rad), rows summing to one,
            indexed like ``X``.
        """
        self.check_is_fitted()
        gates = [to_numpy(output[1]) for output in
                 self.forward_iter(self._prediction_dataset(X), training=False, device="cpu")]
        return pd.DataFrame(np.concatenate(gates), columns=["image", "radiomics"], index=X.index)

    def predict_proba_and_gates(self, X):
        """Class probabilities and gate weights from one pass of the network.

        What :meth:`predict_proba` and :meth:`gate_weights` return, at the cost of one of
        them: the backbone runs once per tile (and view) instead of twice.

        Returns
        -------
        proba : ndarray of shape (n_samples, 3), rows summing to one
        gates : DataFrame of shape (n_samples, 2)
            Columns ``image`` and ``radiomics``, indexed like ``X``.

        Examples
        --------
        >>> from hiercls import HierarchicalFusionClassifier
        >>> callable(HierarchicalFusionClassifier.predict_proba_and_gates)
        True
        """
        self.check_is_fitted()
        nonlinearity = self._nonlinearity()
        probas, gates = [], []
        for output in self.forward_iter(self._prediction_dataset(X), training=False, device="cpu"):
            probas.append(to_numpy(nonlinearity(output[0])))
            gates.append(to_numpy(output[1]))
        return (np.concatenate(probas),
                pd.DataFrame(np.concatenate(gates), columns=["image", "radiomics"], index=X.index))

    @property
    def task_weights_(self):
        """The learned task weights ``(exp(-lA), exp(-lB))`` of the hierarchical loss."""
        self.check_is_fitted(["criterion_"])
        if not hasattr(self.criterion_, "task_weights"):
            raise AttributeError("the flat model (hierarchical=False) has no task weights")
        return np.array(self.criterion_.task_weights())
