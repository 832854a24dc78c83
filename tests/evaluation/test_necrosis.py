import warnings

import numpy as np
import pandas as pd
import pytest

from hiercls.evaluation.cross_validation import EvaluationResult
from hiercls.data.labels import CLASS_NAMES
from hiercls.evaluation.necrosis import (
    NO_TUMOR,
    necrosis_from_evaluation,
    necrosis_from_probabilities,
    necrosis_report,
    reference_necrosis,
)

from ..conftest import TINY_CLASSIFIER

# Patient A: P1 sums to 1.0, P1 + P2 to 2.3; argmax: one Non-Viable, one Viable, one Non-Tumor.
# Patient B: P1 sums to 1.75, P1 + P2 to 1.9; argmax: two Non-Viable.
PROBA = np.array([
    [0.2, 0.6, 0.2],
    [0.0, 0.3, 0.7],
    [0.5, 0.1, 0.4],
    [0.1, 0.8, 0.1],
    [0.0, 0.95, 0.05],
])
GROUPS = ["A", "A", "A", "B", "B"]


def _random_proba(n, seed):
    return np.random.default_rng(seed).dirichlet([1.0, 1.0, 1.0], size=n)


def test_fractions_by_hand():
    table = necrosis_from_probabilities(PROBA, GROUPS, n_bootstrap=0)
    assert list(table.index) == ["A", "B"]
    assert table.index.name == "group"
    assert table["n_tiles"].tolist() == [3, 2]
    np.testing.assert_allclose(table["expected_tumor_tiles"], [2.3, 1.9])
    np.testing.assert_allclose(table["expected_necrotic_tiles"], [1.0, 1.75])
    np.testing.assert_allclose(table["necrotic_fraction"], [1.0 / 2.3, 1.75 / 1.9])
    np.testing.assert_allclose(table["viable_fraction"], [1.3 / 2.3, 0.15 / 1.9])
    assert table["argmax_tumor_tiles"].tolist() == [2, 2]
    np.testing.assert_allclose(table["necrotic_fraction_argmax"], [0.5, 1.0])
    np.testing.assert_allclose(table["viable_fraction_argmax"], [0.5, 0.0])
    assert table["response"].tolist() == ["poor", "good"]
    # No bootstrap, no interval.
    assert table[["necrotic_fraction_low", "necrotic_fraction_high"]].isna().all().all()


def test_index_named_after_groups_and_frame_input():
    predictions = pd.DataFrame(PROBA, columns=list(CLASS_NAMES))
    predictions.insert(0, "gate_image", 0.5)  # extra columns are ignored
    groups = pd.Series(GROUPS, name="patient")
    table = necrosis_from_probabilities(predictions, groups, n_bootstrap=0)
    assert table.index.name == "patient"
    np.testing.assert_allclose(table["necrotic_fraction"], [1.0 / 2.3, 1.75 / 1.9])


def test_interval_covers_estimate_and_narrows_with_more_tiles():
    proba = _random_proba(40, seed=1)
    few = necrosis_from_probabilities(proba, ["P"] * 40, n_bootstrap=500)
    many = necrosis_from_probabilities(np.tile(proba, (10, 1)), ["P"] * 400, n_bootstrap=500)
    for table in (few, many):
        row = table.loc["P"]
        assert row["necrotic_fraction_low"] <= row["necrotic_fraction"] <= row["necrotic_fraction_high"]
        assert row["viable_fraction_low"] <= row["viable_fraction"] <= row["viable_fraction_high"]
        np.testing.assert_allclose(row["viable_fraction_low"], 1 - row["necrotic_fraction_high"])
    # Same fraction, ten times the tiles: about sqrt(10) times narrower.
    np.testing.assert_allclose(many["necrotic_fraction"], few["necrotic_fraction"])
    width = lambda t: float(t["necrotic_fraction_high"].iloc[0] - t["necrotic_fraction_low"].iloc[0])
    assert width(many) < 0.5 * width(few)
    # Higher confidence, wider interval; the same seed, the same interval.
    wide = necrosis_from_probabilities(proba, ["P"] * 40, n_bootstrap=500, confidence=0.99)
    assert width(wide) > width(few)
    again = necrosis_from_probabilities(proba, ["P"] * 40, n_bootstrap=500)
    pd.testing.assert_frame_equal(again, few)


def test_group_without_tumor_is_nan_without_warning():
    proba = np.vstack([_random_proba(10, seed=2),
                       np.tile([0.99, 0.005, 0.005], (10, 1)),   # 0.1 expected tumor tiles
                       np.tile([1.0, 0.0, 0.0], (5, 1))])        # none at all
    groups = ["tumor"] * 10 + ["almost"] * 10 + ["none"] * 5
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = necrosis_from_probabilities(proba, groups, n_bootstrap=200)
    for group in ("almost", "none"):
        row = table.loc[group]
        assert row["response"] == NO_TUMOR
        assert np.isnan(row[["necrotic_fraction", "necrotic_fraction_low",
                             "necrotic_fraction_high", "viable_fraction",
                             "necrotic_fraction_argmax"]].astype(float)).all()
    assert table.loc["tumor", "response"] in ("good", "poor")
    # The minimum is a parameter: 0.1 expected tumor tiles is enough for a minimum of 0.05.
    lenient = necrosis_from_probabilities(proba, groups, n_bootstrap=0, min_tumor_tiles=0.05)
    assert lenient.loc["almost", "necrotic_fraction"] == pytest.approx(0.5)


def test_hard_probabilities_and_resamples_without_tumor():
    # One tumor tile among many: some resamples have no tumor at all and are left out.
    proba = np.vstack([[0.0, 1.0, 0.0], np.tile([1.0, 0.0, 0.0], (9, 1))])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = necrosis_from_probabilities(proba, ["P"] * 10, n_bootstrap=300)
    assert table.loc["P", "necrotic_fraction"] == 1.0
    assert table.loc["P", "necrotic_fraction_low"] == table.loc["P", "necrotic_fraction_high"] == 1.0


def test_response_threshold():
    # Nine necrotic tiles and one viable: exactly 90 % necrosis.
    proba = np.vstack([np.tile([0.0, 1.0, 0.0], (9, 1)), [0.0, 0.0, 1.0]])
    groups = ["P"] * 10
    assert necrosis_from_probabilities(proba, groups, n_bootstrap=0).loc["P", "response"] == "good"
    strict = necrosis_from_probabilities(proba, groups, n_bootstrap=0, threshold=0.95)
    assert strict.loc["P", "response"] == "poor"
    y = ["Non-Viable-Tumor"] * 9 + ["Viable-Tumor"]
    assert reference_necrosis(y, groups).loc["P", "response"] == "good"
    assert reference_necrosis(y, groups, threshold=0.95).loc["P", "response"] == "poor"


def test_reference_from_names_and_codes():
    codes = [0, 1, 1, 2, 0, 2, 2, 1, 0]
    names = [CLASS_NAMES[c] for c in codes]
    groups = ["A", "A", "A", "A", "B", "B", "B", "B", "C"]
    table = reference_necrosis(names, groups)
    pd.testing.assert_frame_equal(table, reference_necrosis(np.array(codes), groups))
    assert table["n_tiles"].tolist() == [4, 4, 1]
    assert table["tumor_tiles"].tolist() == [3, 3, 0]
    assert table["necrotic_tiles"].tolist() == [2, 1, 0]
    assert table["viable_tiles"].tolist() == [1, 2, 0]
    np.testing.assert_allclose(table["necrotic_fraction"], [2 / 3, 1 / 3, np.nan])
    np.testing.assert_allclose(table["viable_fraction"], [1 / 3, 2 / 3, np.nan])
    assert table["response"].tolist() == ["poor", "poor", NO_TUMOR]


@pytest.mark.parametrize("kwargs, message", [
    ({"proba": np.ones((5, 2)) / 2}, r"shape \(n_samples, 3\)"),
    ({"groups": GROUPS[:-1]}, "groups has 4 entries"),
    ({"groups": ["A", None, "A", "B", "B"]}, "missing"),
    ({"proba": PROBA * 2}, r"\[0, 1\]"),
    ({"confidence": 1.0}, "confidence"),
    ({"n_bootstrap": -1}, "n_bootstrap"),
    ({"threshold": 90}, "threshold"),
    ({"min_tumor_tiles": 0}, "min_tumor_tiles"),
])
def test_invalid_inputs_are_named(kwargs, message):
    arguments = {"proba": PROBA, "groups": GROUPS, "n_bootstrap": 0} | kwargs
    with pytest.raises(ValueError, match=message):
        necrosis_from_probabilities(arguments.pop("proba"), arguments.pop("groups"), **arguments)


class _FixedProba:
    """A 'fitted classifier' whose probabilities are given: row i of X gets PROBA[i]."""

    def __init__(self, classes=(0, 1, 2)):
        self.classes_ = np.array(classes)

    def predict_proba(self, X):
        return PROBA[X["row"].to_numpy()]


def test_necrosis_report_with_and_without_labels():
    X = pd.DataFrame({"row": range(5), "patient": GROUPS})
    y = ["Non-Tumor", "Viable-Tumor", "Non-Viable-Tumor", "Non-Viable-Tumor", "Non-Viable-Tumor"]
    plain = necrosis_report(_FixedProba(), X, X["patient"], n_bootstrap=50)
    assert not any(column.startswith("reference_") for column in plain.columns)
    table = necrosis_report(_FixedProba(), X, "patient", y=y, n_bootstrap=50)
    pd.testing.assert_frame_equal(table[plain.columns], plain)
    assert table.index.name == "patient"
    np.testing.assert_allclose(table["reference_necrotic_fraction"], [0.5, 1.0])
    assert table["reference_response"].tolist() == ["poor", "good"]
    np.testing.assert_allclose(table["absolute_error"], [abs(1 / 2.3 - 0.5), abs(1.75 / 1.9 - 1.0)])


def test_necrosis_report_needs_three_classes():
    X = pd.DataFrame({"row": range(5)})
    with pytest.raises(ValueError, match="all three classes"):
        necrosis_report(_FixedProba(classes=(0, 2)), X, GROUPS)
    with pytest.raises(ValueError, match="names no column"):
        necrosis_report(_FixedProba(), X, "patient")


def test_necrosis_from_evaluation():
    predictions = pd.DataFrame(PROBA, columns=list(CLASS_NAMES))
    predictions["y_true"] = ["Non-Tumor", "Viable-Tumor", "Non-Tumor", "Non-Viable-Tumor",
                             "Non-Viable-Tumor"]
    predictions["patient"] = GROUPS
    predictions["fold"] = [0, 0, 0, 1, 1]
    result = EvaluationResult(pd.DataFrame(), predictions, [None, None])
    table = necrosis_from_evaluation(result, n_bootstrap=0)
    assert table.index.name == "patient"
    np.testing.assert_allclose(table["necrotic_fraction"], [1.0 / 2.3, 1.75 / 1.9])
    np.testing.assert_allclose(table["reference_necrotic_fraction"], [0.0, 1.0])
    with pytest.raises(ValueError, match="EvaluationResult"):
        necrosis_from_evaluation(EvaluationResult(pd.DataFrame(), predictions[["patient"]], []))


def test_report_on_real_tiles(real_data_dir):
    from hiercls import make_fusion_pipeline
    from hiercls.data.datasets import load_osteosarcoma_ut
    from hiercls.features.radiomics import transformer

    backend = "fast" if "fast" in getattr(transformer, "BACKENDS", ()) else "pyradiomics"
    X, y, groups = load_osteosarcoma_ut(real_data_dir, subsample=8, random_state=0)
    pipeline = make_fusion_pipeline(**(TINY_CLASSIFIER | {"max_epochs": 1}),
                                    radiomics__mask="full", radiomics__backend=backend)
    pipeline.fit(X, y, classifier__groups=groups)
    table = necrosis_report(pipeline, X, groups, y=y, n_bootstrap=200)

    reference = reference_necrosis(y, groups)
    assert table.index.name == "patient"
    assert sorted(table.index) == sorted(groups.unique())
    assert table["n_tiles"].tolist() == reference["n_tiles"].tolist()
    for column in ("tumor_tiles", "necrotic_tiles", "viable_tiles", "necrotic_fraction",
                   "viable_fraction", "response"):
        pd.testing.assert_series_equal(table[f"reference_{column}"], reference[column],
                                       check_names=False)
    # P9 has only Non-Tumor tiles: no reference fraction.
    assert table.loc["P9", "reference_response"] == NO_TUMOR
    estimated = table["necrotic_fraction"].notna()
    assert ((table["necrotic_fraction"] >= 0) & (table["necrotic_fraction"] <= 1))[estimated].all()
    assert (table["necrotic_fraction_low"] <= table["necrotic_fraction_high"])[estimated].all()
    assert set(table["response"]) <= {"good", "poor", NO_TUMOR}
