"""The one declaration of the classifier's parameters, and what is derived from it."""

import inspect
import pickle

import pytest

from hiercls import HierarchicalFusionClassifier
from hiercls.cli.model_options import _make_pipeline
from hiercls.cli.parser import build_parser
from hiercls.estimator.parameters import (
    BY_NAME,
    CACHE_KEY,
    MODULE_ARGUMENTS,
    PARAMETERS,
    Number,
    Option,
    parameter_constraints,
)
from hiercls.exceptions import InvalidParameterError

#: skorch's own arguments of __init__, not the classifier's to declare.
SKORCH_ARGUMENTS = {"module", "criterion", "optimizer", "kwargs"}


def _own_signature():
    signature = inspect.signature(HierarchicalFusionClassifier.__init__)
    return {name: parameter.default for name, parameter in signature.parameters.items()
            if name != "self" and name not in SKORCH_ARGUMENTS}


def test_every_argument_of_init_is_declared_once_with_its_default():
    own = _own_signature()
    assert [p.name for p in PARAMETERS] == list(dict.fromkeys(p.name for p in PARAMETERS))
    assert set(own) == set(BY_NAME)
    for name, default in own.items():
        if name == "train_split":  # an object; the declaration only describes it
            continue
        assert BY_NAME[name].default == default, name


def test_parameter_constraints_come_from_the_declaration():
    constraints = HierarchicalFusionClassifier._parameter_constraints
    assert constraints == parameter_constraints()
    assert set(constraints) == set(BY_NAME)
    rule = constraints["finetune_stages"][0]
    assert rule.is_satisfied_by(2) and not rule.is_satisfied_by(True)
    assert not rule.is_satisfied_by(-1) and str(rule) == "an int >= 0"
    assert constraints["backbone"] == "no_validation"


@pytest.mark.parametrize("command", ["fit", "evaluate"])
def test_the_command_line_reaches_every_declared_parameter(command):
    # Fails when a parameter is added to the classifier without its option, or an option
    # names a parameter that is gone.
    subparser = build_parser()._subparsers._group_actions[0].choices[command]
    flags = {flag: action for action in subparser._actions for flag in action.option_strings}
    for parameter in PARAMETERS:
        if isinstance(parameter.cli, Option):
            action = flags[parameter.flag]
            assert action.dest == parameter.name and action.help, parameter.name
        elif isinstance(parameter.cli, str):
            assert parameter.cli in flags, parameter.name
        else:
            assert parameter.no_cli, f"{parameter.name}: no option and no reason given"


VALUES = {"positive_int": ("3", 3), "int": ("1", 1), "float": ("0.05", 0.05),
          "str": ("resnet18", "resnet18"), "pretrained": ("none", False)}


def test_each_generated_option_sets_its_parameter_on_the_pipeline(tmp_path):
    argv = ["fit", str(tmp_path), "--model", str(tmp_path / "m.hiercls"), "--preset", "none"]
    expected = {}
    for parameter in PARAMETERS:
        option = parameter.cli
        if not isinstance(option, Option):
            continue
        if option.type == "bool":
            argv.append(f"--no-{parameter.flag[2:]}")
            expected[parameter.name] = False
            continue
        text, value = VALUES[option.type]
        if option.choices:
            text, value = str(option.choices[1]), option.choices[1]
        argv += [parameter.flag, text]
        expected[parameter.name] = value
    args = build_parser().parse_args(argv)
    classifier = _make_pipeline(args, verbose=0, radiomics_verbose=0).named_steps["classifier"]
    params = classifier.get_params()
    assert {name: params[name] for name in expected} == expected


def test_module_arguments_and_cache_key_are_declared_parameters():
    assert set(MODULE_ARGUMENTS.values()) <= set(BY_NAME)
    assert MODULE_ARGUMENTS["n_radiomic_features"] == "radiomic_columns"
    assert {"backbone", "pretrained", "stain_jitter", "finetune_stages"} <= set(CACHE_KEY)
    assert "embed_dim" not in CACHE_KEY  # the head's width does not change the backbone


def test_number_rule_names_the_parameter():
    with pytest.raises(InvalidParameterError, match=r"eta must be a number >= 0; got -1"):
        Number(low=0).check(-1, "eta")


def test_old_pickles_get_the_declared_defaults():
    clf = HierarchicalFusionClassifier(verbose=0)
    state = clf.__getstate__()
    for name in ("finetune_stages", "view_blur", "predict_views"):
        del state[name]
    restored = HierarchicalFusionClassifier.__new__(HierarchicalFusionClassifier)
    restored.__setstate__(pickle.loads(pickle.dumps(state)))
    assert (restored.finetune_stages, restored.view_blur, restored.predict_views) == (0, 0.0, 8)
