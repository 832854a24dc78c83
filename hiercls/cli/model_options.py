"""The model of ``hiercls fit`` and ``evaluate``: the options checked, the preset filled in, the pipeline.

The preset's values come from :func:`hiercls.estimator.pipeline.resolve_params`, the rule
:func:`~hiercls.make_fusion_pipeline` applies, so the command line and Python cannot differ.
"""

from pathlib import Path

from ..exceptions import CommandError
from .io import _cache_param, _one_line

# --------------------------------------------------------------------------------------
# Model options

def _unknown_backbone(name):
    return CommandError(f"--backbone {name!r} is not a timm model name; expected one of "
                        "timm.list_models(), e.g. efficientnet_b0 or resnet18")


def _check_model_options(args):
    """The backbone and its weights, checked by the rules of hiercls.nn.backbones."""
    from ..nn.backbones import OFFLINE_SOURCES, check_backbone_name, check_pretrained

    resolve_preset(args)
    if not args.radiomics_only:
        try:
            check_backbone_name(args.backbone)
        except ValueError:
            raise _unknown_backbone(args.backbone) from None
    weights = args.pretrained
    if isinstance(weights, str):
        try:
            # expanduser leaves the named offline source as it is.
            check_pretrained(weights if weights in OFFLINE_SOURCES
                             else str(Path(weights).expanduser()))
        except FileNotFoundError:
            raise CommandError(f"--pretrained {weights!r} is not an existing file; expected none, "
                               f"timm, {', '.join(OFFLINE_SOURCES)} or a state-dict file") from None
        except ValueError as error:
            raise CommandError(f"--pretrained {weights!r}: {_one_line(error)}") from None
    if args.patience is not None and args.patience < 0:
        raise CommandError(f"--patience must be >= 0; got {args.patience}")


def _radiomics_params(args, verbose):
    return dict(channel=args.channel, mask=args.mask, backend=args.backend,
                bin_width=args.bin_width, n_jobs=args.n_jobs, cache=_cache_param(args.cache),
                verbose=verbose)


def _declared_options():
    """The classifier parameters that have an option of their own (the rest are set from
    --flat, --image-only, --patience, ... below)."""
    from ..estimator.parameters import PARAMETERS, Option

    return [p.name for p in PARAMETERS if isinstance(p.cli, Option)]


def resolve_preset(args):
    """Fill every model option left unset (None) with the ``--preset``'s value, in place.

    The values are those :func:`~hiercls.estimator.pipeline.resolve_params` gives the
    pipeline (with its rule for another ``--backbone``), else the classifier's and the
    radiomics step's defaults. After it, ``args`` names the whole model (what the messages
    and run.json report), and ``args.validation`` is ``"tiles"``, ``"patients"`` or None
    (no early stopping).
    """
    from ..estimator.classifier import HierarchicalFusionClassifier
    from ..estimator.pipeline import resolve_params
    from ..estimator.splits import GroupedValidSplit
    from ..features.radiomics import RadiomicsTransformer

    args.preset = getattr(args, "preset", None) or "hiercls"
    backbone = getattr(args, "backbone", None)
    given = {} if not backbone else {"backbone": backbone, **{
        name: getattr(args, name) for name in ("pretrained", "freeze_backbone")
        if getattr(args, name, None) is not None}}
    if getattr(args, "radiomics_only", False):
        given["use_image"] = False
    try:
        params = resolve_params(args.preset, **given)
    except ValueError as error:
        if "freeze_backbone=True" not in str(error):
            raise
        from ..nn.backbones import check_backbone_name

        try:  # a misspelt name is the first thing to say
            check_backbone_name(backbone)
        except ValueError:
            raise _unknown_backbone(backbone) from None
        # The same refusal as make_fusion_pipeline's, in the command line's words.
        raise CommandError(
            f"--backbone {backbone} drops the weights of --preset {args.preset} but keeps "
            "its frozen backbone, which would freeze a randomly initialized network; give "
            "--pretrained WEIGHTS for that backbone, or --no-freeze-backbone to train it "
            "whole") from None
    defaults = {**{f"classifier__{k}": v for k, v in
                   HierarchicalFusionClassifier().get_params(deep=False).items()},
                **{f"radiomics__{k}": v for k, v in
                   RadiomicsTransformer().get_params(deep=False).items()}}

    def preset(name):
        return params.get(name, defaults[name])

    for name in _declared_options():
        if getattr(args, name, None) is None:
            setattr(args, name, preset(f"classifier__{name}"))
    # The modality flags are off unless given: a preset without a branch turns one on,
    # unless the other is given (the user's choice wins).
    if not (getattr(args, "image_only", False) or getattr(args, "radiomics_only", False)):
        args.radiomics_only = not preset("classifier__use_image")
        args.image_only = not preset("classifier__use_radiomics")
    if getattr(args, "flat", None) is None:
        args.flat = not preset("classifier__hierarchical")
    for option in ("channel", "mask"):
        if getattr(args, option, None) is None:
            setattr(args, option, preset(f"radiomics__{option}"))
    split, patience = preset("classifier__train_split"), preset("classifier__patience")
    args.validation = getattr(args, "validation", None)
    if getattr(args, "patience", None) is None:
        args.patience = 0 if split is None or patience is None else patience
    if args.validation is None and args.patience:
        tiles = isinstance(split, GroupedValidSplit) and split.by == "tiles"
        args.validation = "tiles" if tiles else "patients"
    if not args.patience:
        args.validation = None
    return args


def _make_pipeline(args, *, verbose, radiomics_verbose):
    from ..estimator.pipeline import make_fusion_pipeline
    from ..estimator.splits import GroupedValidSplit

    resolve_preset(args)
    pretrained = args.pretrained
    if isinstance(pretrained, str) and Path(pretrained).expanduser().is_file():
        pretrained = str(Path(pretrained).expanduser().resolve())
    params = {name: getattr(args, name) for name in _declared_options()}
    params.update(
        pretrained=pretrained, patience=args.patience or None, hierarchical=not args.flat,
        use_image=not args.radiomics_only, use_radiomics=not args.image_only,
        device=args.device, cache=_cache_param(args.cache), random_state=args.seed,
        verbose=verbose)
    # The split holds out whole patients only when asked to: fit always passes them.
    params["train_split"] = (None if not args.patience else GroupedValidSplit(
        0.2, by="tiles" if args.validation == "tiles" else "groups"))
    params.update({f"radiomics__{k}": v for k, v in _radiomics_params(args, radiomics_verbose).items()})
    params["resolution__mpp"] = args.mpp
    return make_fusion_pipeline(preset=args.preset, **params)
