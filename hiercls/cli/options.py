"""The options the ``hiercls`` commands share, and the types that check their values.

An option type turns the text of an option into its value or raises
:class:`argparse.ArgumentTypeError` saying what was expected; argparse reports it on one
line with exit status 2.
"""

import argparse
import math

# --------------------------------------------------------------------------------------
# Option types

def _number(text, kind, accept, expected):
    """``text`` as a ``kind`` (int or float) that ``accept`` admits, else argparse's error
    saying what was ``expected``."""
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not (math.isfinite(value) and accept(value)):
        raise argparse.ArgumentTypeError(f"expected {expected}; got {text!r}")
    return value


def _positive_int(text):
    return _number(text, int, lambda v: v >= 1, "a positive integer")


def _non_negative_int(text):
    return _number(text, int, lambda v: v >= 0, "an integer >= 0")


def _positive_number(text):
    return _number(text, float, lambda v: v > 0, "a positive number")


def _positive_mpp(text):
    return _number(text, float, lambda v: v > 0, "a positive number of micrometres per pixel")


def _n_jobs(text):
    return _number(text, int, lambda v: v != 0, "a positive integer or -1 (all cores)")


def _fraction(text, *, open_interval=False):
    if open_interval:
        return _number(text, float, lambda v: 0.0 < v < 1.0, "a number strictly between 0 and 1")
    return _number(text, float, lambda v: 0.0 <= v <= 1.0, "a number in [0, 1]")


def _confidence(text):
    return _fraction(text, open_interval=True)


def _fraction_or_none(text):
    return None if text.lower() == "none" else _fraction(text)


def _mask(text):
    from ..features.radiomics.masks import MASKS

    regions = tuple(part.strip() for part in text.split(","))
    bad = [region for region in regions if region not in MASKS]
    if bad or len(set(regions)) != len(regions):
        raise argparse.ArgumentTypeError(
            f"expected one of {', '.join(MASKS)} or a comma-separated list of them; got {text!r}")
    return regions[0] if len(regions) == 1 else regions


def _cache(text):
    return None if text.lower() == "none" else text


def _pretrained(text):
    lowered = text.lower()
    if lowered in ("none", "false", "no"):
        return False
    if lowered in ("timm", "hub", "true", "yes"):
        return True
    return text


# --------------------------------------------------------------------------------------
# Shared options

def _add_quiet(parser):
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="no progress bars or messages; errors and the results table only")


def _add_sampling(parser):
    group = parser.add_argument_group("data")
    group.add_argument("--subsample", type=_positive_int, metavar="N",
                       help="keep at most N tiles per patient, drawn stratified by class "
                            "(for quick runs)")
    group.add_argument("--seed", type=int, default=0,
                       help="seed of the subsample and of the model (default: 0)")


def _add_skip_unreadable(parser):
    parser.add_argument(
        "--skip-unreadable", action="store_true",
        help="go on without the tiles that cannot be decoded (truncated or not images), "
             "listing them with the reason in a skipped.csv beside the output (FILE.skipped.csv "
             "for a file, DIR/skipped.csv for a folder) and on stderr; without it, any "
             "unreadable tile ends the command before the work starts, naming them all")


def _add_radiomics(parser, *, preset=False):
    """The radiomics options; with ``preset``, channel and mask default to the preset's."""
    from ..features.radiomics.channels import CHANNELS
    from ..features.radiomics.transformer import BACKENDS

    group = parser.add_argument_group("radiomics")
    group.add_argument("--channel", choices=CHANNELS, default=None if preset else "gray",
                       help="intensity channel of the features (default: "
                            + ("the preset's)" if preset else "gray)"))
    group.add_argument("--mask", type=_mask, default=None if preset else "tissue",
                       metavar="tissue|full|nuclei",
                       help="region described: tissue (Otsu of gray), full tile or nuclei "
                            "(Otsu of hematoxylin); 'tissue,full' gives both, columns "
                            "prefixed by the region (default: "
                            + ("the preset's)" if preset else "tissue)"))
    group.add_argument("--backend", choices=BACKENDS, default="fast",
                       help="fast (PyRadiomics' features with numpy) or pyradiomics (the "
                            "reference, much slower) (default: fast)")
    group.add_argument("--bin-width", type=float, default=25.0,
                       help="PyRadiomics binWidth on the 0..255 scale (default: 25)")
    group.add_argument("--n-jobs", type=_n_jobs, default=1,
                       help="processes for radiomics; -1 uses all cores (default: 1)")
    group.add_argument("--cache", type=_cache, default="auto", metavar="DIR|none",
                       help="feature cache folder; 'auto' is $HIERCLS_CACHE_DIR or "
                            "~/.cache/hiercls, 'none' turns it off (default: auto)")


# --------------------------------------------------------------------------------------
# Model options (from hiercls.estimator.parameters)

#: The option types a declared model option may name (hiercls.estimator.parameters.Option).
_OPTION_TYPES = {"positive_int": _positive_int, "int": int, "float": float, "str": str,
                 "pretrained": _pretrained}


def _add_declared_options(group):
    """One option per classifier parameter declared with an Option, from its declaration."""
    from ..estimator.parameters import PARAMETERS, Option

    for parameter in PARAMETERS:
        option = parameter.cli
        if not isinstance(option, Option):
            continue
        # None: the --preset's value (see hiercls.cli.commands.resolve_preset).
        kwargs = dict(dest=parameter.name, default=None,
                      help=f"{parameter.help} (default: the preset's)")
        if option.type == "bool":
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs.update(type=_OPTION_TYPES[option.type], metavar=option.metavar,
                          choices=option.choices)
        group.add_argument(parameter.flag, **kwargs)


def _add_model(parser):
    from ..estimator.presets import PRESET_NAMES

    group = parser.add_argument_group("model")
    # The options default to None: the --preset's value (see resolve_preset).
    group.add_argument("--preset", choices=PRESET_NAMES, default="hiercls",
                       help="the settings every model option below defaults to: hiercls (what "
                            "benchmarks/generalization.py chose on training patients only: a "
                            "frozen offline ImageNet backbone), paper (the paper's whole "
                            "fine-tuned InceptionV3, weights from the timm hub), necrosis (for "
                            "an unseen patient's necrotic fraction: hiercls without the image "
                            "branch, what benchmarks/necrosis.py chose) or none (the "
                            "classifier's own defaults) (default: hiercls)")
    _add_declared_options(group)
    group.add_argument("--patience", type=int, default=None, metavar="EPOCHS",
                       help="early stopping on the validation split of --validation; 0 turns "
                            "it off and trains all --max-epochs on all tiles (default: the "
                            "preset's)")
    group.add_argument("--validation", choices=("tiles", "patients"), default=None,
                       help="the early-stopping split: a stratified share of the training "
                            "tiles, or whole training patients (which takes a third of the "
                            "data with three patients) (default: the preset's)")
    group.add_argument("--flat", action="store_true", default=None,
                       help="the flat 3-class ablation instead of the hierarchical loss")
    modality = group.add_mutually_exclusive_group()
    modality.add_argument("--image-only", action="store_true", help="ablation without radiomics")
    modality.add_argument("--radiomics-only", action="store_true", help="ablation without the image")
    group.add_argument("--device", default="auto",
                       help="torch device; auto is cuda where available (default: auto)")
    group.add_argument("--mpp", type=_positive_mpp, metavar="M",
                       help="the training tiles' resolution in micrometres per pixel, when "
                            "DATA does not declare it (TCIA folders do: 2.0 for the 512 px "
                            "copies). The model resamples tiles declared at another "
                            "resolution to it; without it, the resolution is unknown and "
                            "declared tiles pass unchanged (default: none)")


def _add_training(parser):
    """The options of the commands that train a model (fit, evaluate)."""
    _add_model(parser)
    _add_radiomics(parser, preset=True)
    _add_sampling(parser)
    _add_skip_unreadable(parser)
    _add_quiet(parser)


# --------------------------------------------------------------------------------------
# Necrosis options (from necrosis_report)

_NECROSIS_METHOD_HELP = (
    "how tiles become a group's necrotic fraction: auto (the quantifier the model file "
    "carries, fitted by 'hiercls fit --calibration', else the expected counts, with a "
    "warning), pcc / cc (expected / argmax counts, which carry the training patients' class "
    "mix), or a quantification method that corrects for it with the model's calibration set: "
    "acc, pacc, emq, dmy, kdey")


# The methods of hiercls.evaluation.quantification.METHODS (a test keeps them equal).
_NECROSIS_METHOD = ("--necrosis-method", "method", {
    "choices": ("auto", "cc", "pcc", "acc", "pacc", "emq", "dmy", "kdey"),
    "metavar": "METHOD", "help": _NECROSIS_METHOD_HELP})


def _add_necrosis_method(parser):
    """--necrosis-method alone, for the commands that take no other necrosis option."""
    option, _, arguments = _NECROSIS_METHOD
    parser.add_argument(option, default="auto",
                        **{**arguments, "help": arguments["help"] + " (default: auto)"})


#: The options of :func:`hiercls.evaluation.necrosis.necrosis_report` on the command line:
#: (option, keyword of necrosis_report, argparse arguments). The default of each is the
#: function's own, so the two cannot drift; a new keyword is one more row here.
NECROSIS_OPTIONS = (
    _NECROSIS_METHOD,
    ("--n-bootstrap", "n_bootstrap", {
        "type": _non_negative_int, "metavar": "N",
        "help": "bootstrap resamples of each group's tiles for the interval; 0: no interval"}),
    ("--confidence", "confidence", {
        "type": _confidence, "metavar": "C", "help": "coverage of the interval, in (0, 1)"}),
    ("--threshold", "threshold", {
        "type": _fraction, "metavar": "F",
        "help": "least necrotic fraction that is a good response"}),
    ("--min-tumor-tiles", "min_tumor_tiles", {
        "type": _positive_number, "metavar": "N",
        "help": "least expected number of tumor tiles a group needs; below it the group has "
                "no fraction and its response is 'no tumor'"}),
    ("--fraction", "fraction", {
        "choices": ("expected", "argmax"),
        "help": "what the fraction counts: expected (sums of the tumor classes' "
                "probabilities) or argmax (each tile as its most probable class)"}),
    ("--tumor-threshold", "tumor_threshold", {
        "type": _fraction_or_none, "metavar": "T|none",
        "help": "count only the tiles whose P(Non-Viable-Tumor) + P(Viable-Tumor) reaches T"}),
    ("--error-margin", "error_margin", {
        "type": _fraction_or_none, "metavar": "M|none",
        "help": "widen the interval by M on each side: the fraction's error measured on "
                "held-out patients"}),
    ("--members", "members", {
        "action": "store_true",
        "help": "the interval also draws the members of an ensemble model (a SeedEnsemble)"}),
    ("--seed", "random_state", {"type": int, "help": "seed of the bootstrap"}),
)


def _add_necrosis_options(parser):
    """The options of :data:`NECROSIS_OPTIONS`, each defaulting to necrosis_report's default."""
    import inspect

    from ..evaluation.necrosis import necrosis_report

    defaults = inspect.signature(necrosis_report).parameters
    group = parser.add_argument_group("necrosis (the options of necrosis_report)")
    for option, keyword, arguments in NECROSIS_OPTIONS:
        default = defaults[keyword].default
        shown = "none" if default is None else default
        help_text = arguments["help"] + ("" if arguments.get("action") else f" (default: {shown})")
        group.add_argument(option, default=default, **{**arguments, "help": help_text})


def necrosis_options(args):
    """The keyword arguments of necrosis_report that the options of :data:`NECROSIS_OPTIONS` set."""
    return {keyword: getattr(args, option.lstrip("-").replace("-", "_"))
            for option, keyword, _ in NECROSIS_OPTIONS}
