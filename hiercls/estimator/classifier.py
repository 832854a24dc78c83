"""HierarchicalFusionClassifier: the fusion network as a skorch/scikit-learn classifier."""

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from skorch import NeuralNetClassifier
from skorch.utils import is_dataset, to_tensor

from ..data.labels import encode_labels, tumor_target, viable_target
from ..exceptions import RandomFrozenBackboneWarning  # noqa: F401  (re-exported here)
from ..features.cache import resolve_cache_dir
from ..features.frozen import FrozenFeatures
from ..features.group_standardization import group_labels, standardize_within_groups
from ..nn.fusion import FusionNet
from ..nn.loss import HierarchicalLoss, inverse_frequency_weights
from ..nn.seeding import seeded
from .device import AutoDeviceMixin, resolve_device  # noqa: F401  (its home before)
from .inputs import (
    check_radiomic_values,
    check_tile_frame,
    find_radiomic_columns,  # noqa: F401  (its home before)
    select_radiomic_columns,
)
from .network import NetworkMixin
from .parameters import CACHE_KEY, check_parameters, parameter_constraints
from .prediction import PredictionMixin
from .routing import PatientRoutingMixin
from .splits import GroupedValidSplit
from .tile_dataset import TileDataset


class HierarchicalFusionClassifier(PredictionMixin, PatientRoutingMixin, NetworkMixin,
                                   AutoDeviceMixin, NeuralNetClassifier):
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
    standardize_by : str or None, default=None
        The column of ``X`` naming each tile's group (``"patient"``, ``"slide"``): the
        frozen backbone's features and the radiomics are standardized within each group,
        with that group's own mean and standard deviation, in training and in prediction
        (:mod:`hiercls.features.group_standardization`), against what a patient's stain
        and scanner give all its tiles. Predicting, the group's tiles must be predicted
        together (a case, a slide); groups of one tile are refused. Needs
        ``freeze_backbone`` (or ``use_image=False``). None is off.
    adversary_by : str or None, default=None
        The column of ``X`` naming each tile's group (``"patient"``, ``"slide"``) for
        patient-adversarial training: a head guesses the group from the fused embedding
        and, through a gradient reversal (:mod:`hiercls.nn.adversary`), teaches the
        layers below an embedding it cannot read the group from. Its cross-entropy joins
        the training loss (not the validation loss, whose patients it never saw); in
        prediction the column is not needed. None is off.
    adversary_weight : float, default=1.0
        The gradient reversal's scale (Ganin et al.'s lambda); ignored without
        ``adversary_by``.
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
    n_features_in_ : int
        The number of columns of ``X`` in ``fit`` (the image column among them).
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Those columns' names, when all are strings.
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
    adversary_domains_ : ndarray or None
        With ``adversary_by``, the groups the adversary tells apart (the training tiles'
        values of that column, sorted); None without.
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
                 standardize_by=None, adversary_by=None, adversary_weight=1.0, cache="auto",
                 eta=0.2,
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
        self.standardize_by = standardize_by
        self.adversary_by = adversary_by
        self.adversary_weight = adversary_weight
        self.cache = cache
        self.eta = eta
        self.patience = patience
        self.random_state = random_state

    def _check_frame(self, X, *, fitting):
        check_tile_frame(X, use_image=self.use_image)
        if self.use_radiomics:
            check_radiomic_values(X, self._fit_radiomic_columns(X) if fitting
                                  else self.radiomic_columns_)
        return X

    def _fit_radiomic_columns(self, X):
        return select_radiomic_columns(X, self.radiomic_columns, use_radiomics=self.use_radiomics)

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
            self.n_features_in_ = X.shape[1]
            names = np.asarray(X.columns, dtype=object)
            if all(isinstance(name, str) for name in names):
                self.feature_names_in_ = names
            elif hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
            self.adversary_domains_ = self._fit_adversary_domains(X)
            self.class_weights_ = {
                "tumor": inverse_frequency_weights(tumor_target(codes), 2),
                "viable": inverse_frequency_weights(viable_target(codes)[tumor_target(codes) == 1], 2),
                "flat": inverse_frequency_weights(codes, 3),
            }
        y_values = y.to_numpy() if isinstance(y, pd.Series) else np.asarray(y)
        return y_values, fit_params

    def _fit_adversary_domains(self, X):
        if self.adversary_by is None:
            return None
        domains = np.unique(group_labels(X, self.adversary_by, "adversary_by").astype(str))
        if len(domains) < 2:
            raise ValueError(f"adversary_by={self.adversary_by!r} needs tiles of at least 2 "
                             f"groups in that column of X to tell apart; got {len(domains)}")
        return domains

    def _domain_codes(self, X):
        """Each tile's index in ``adversary_domains_``; -1 for a group fit did not see."""
        labels = group_labels(X, self.adversary_by, "adversary_by").astype(str)
        index = np.searchsorted(self.adversary_domains_, labels)
        index = np.clip(index, 0, len(self.adversary_domains_) - 1)
        return np.where(self.adversary_domains_[index] == labels, index, -1)

    def check_data(self, X, y):
        if y is None:
            raise ValueError("y is required to fit HierarchicalFusionClassifier")
        # All three classes, in the form y uses, even when a fold lacks one.
        self.classes_inferred_ = encode_labels(y)[1]

    # --- skorch hooks (the network and loss: estimator.network) ---------------------
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
        if self.standardize_by is not None:
            X, image_features = self._standardize_within_groups(X, image_features)
        # Training data tell the adversary each tile's group; prediction needs none.
        domains = (self._domain_codes(X) if y is not None and self._has_adversary() else None)
        return TileDataset(
            X, y, radiomic_columns=self.radiomic_columns_ if self.use_radiomics else (),
            use_image=self.use_image, use_radiomics=self.use_radiomics,
            image_features=image_features, domains=domains, **options,
        )

    def _has_adversary(self):
        return (self.adversary_by is not None
                and getattr(self, "adversary_domains_", None) is not None
                and getattr(self.module_, "adversary", None) is not None)

    def _standardize_within_groups(self, X, image_features):
        """X's radiomics and the image features, standardized within each group of tiles."""
        groups = group_labels(X, self.standardize_by)
        if image_features is not None:
            # The features' axis: (tiles, views, F) or a trunk's (tiles, views, C, h, w).
            image_features = standardize_within_groups(image_features, groups, feature_axis=2)
        if self.use_radiomics and self.radiomic_columns_:
            X = X.copy()
            X[self.radiomic_columns_] = standardize_within_groups(
                X[self.radiomic_columns_].to_numpy(dtype=np.float64), groups, feature_axis=1)
        return X, image_features

    def get_loss(self, y_pred, y_true, X=None, training=False):
        """skorch's hook: the criterion's loss, plus in training the adversary's
        cross-entropy over the tiles of groups it knows (``adversary_by``)."""
        logits = y_pred[0] if isinstance(y_pred, tuple) else y_pred
        loss = self.criterion_(logits, to_tensor(y_true, device=self.device_))
        if training and isinstance(y_pred, tuple) and len(y_pred) > 2 and isinstance(X, dict):
            domain = X.get("domain")
            if domain is not None:
                domain = to_tensor(domain, device=self.device_)
                known = domain >= 0
                if bool(known.any()):
                    loss = loss + F.cross_entropy(y_pred[2][known], domain[known])
        return loss
