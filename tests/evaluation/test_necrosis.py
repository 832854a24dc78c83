import warnings

import numpy as np
import pandas as pd
import pytest

from hiercls.data.labels import CLASS_NAMES
from hiercls.evaluation.cross_validation import EvaluationResult
from hiercls.evaluation.necrosis import (
    NO_TUMOR,
    FewPatientsWarning,
    necrosis_error_margin,
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

# The default 95 % interval of _random_proba(40, seed=1) as one group, n_bootstrap=500,
# computed by the code before fraction/tumor_threshold/member_proba/error_margin existed.
DEFAULT_INTERVAL = (0.45820059558707743, 0.6568711205050993)


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
    def width(t):
        return float(t["necrotic_fraction_high"].iloc[0] - t["necrotic_fraction_low"].iloc[0])
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
    ({"confidence": float("nan")}, "confidence"),
    ({"fraction": "counts"}, "fraction"),
    ({"tumor_threshold": 1.5}, "tumor_threshold"),
    ({"error_margin": -0.1}, "error_margin"),
    ({"member_proba": np.stack([PROBA, PROBA])[:, :4]}, r"member_proba must have shape \(n_members, 5, 3\)"),
    ({"member_proba": PROBA}, "member_proba must have shape"),
    ({"member_proba": np.stack([PROBA, PROBA * 2])}, r"member_proba must hold probabilities"),
])
def test_invalid_inputs_are_named(kwargs, message):
    arguments = {"proba": PROBA, "groups": GROUPS, "n_bootstrap": 0} | kwargs
    with pytest.raises(ValueError, match=message):
        necrosis_from_probabilities(arguments.pop("proba"), arguments.pop("groups"), **arguments)


@pytest.mark.parametrize("name, value", [("threshold", "0.9"), ("n_bootstrap", 2.5),
                                         ("confidence", True), ("tumor_threshold", "high")])
def test_wrong_types_are_named(name, value):
    with pytest.raises(TypeError, match=name):
        necrosis_from_probabilities(PROBA, GROUPS, **{name: value})


# --------------------------------------------------------------------------------------
# The options: fraction, tumor_threshold, member_proba, error_margin

def _mostly_non_tumor(n_tiles=200, seed=0):
    """90 % Non-Tumor tiles with stray tumor probability, 10 % certainly necrotic tumor."""
    rng = np.random.default_rng(seed)
    n_tumor = n_tiles // 10
    tumor = np.column_stack([rng.uniform(0.0, 0.1, n_tumor), np.zeros(n_tumor), np.zeros(n_tumor)])
    tumor[:, 1] = 1.0 - tumor[:, 0]
    proba = np.vstack([np.tile([0.8, 0.1, 0.1], (n_tiles - n_tumor, 1)), tumor])
    y = ["Non-Tumor"] * (n_tiles - n_tumor) + ["Non-Viable-Tumor"] * n_tumor
    return proba, y, ["P"] * n_tiles


def test_tumor_threshold_removes_stray_probability_of_non_tumor_tiles():
    proba, y, groups = _mostly_non_tumor()
    truth = reference_necrosis(y, groups).loc["P", "necrotic_fraction"]
    assert truth == 1.0
    default = necrosis_from_probabilities(proba, groups, n_bootstrap=0).loc["P"]
    assert abs(default["necrotic_fraction"] - truth) > 0.25  # pulled towards 0.5
    gated = necrosis_from_probabilities(proba, groups, n_bootstrap=200, tumor_threshold=0.5).loc["P"]
    assert gated["necrotic_fraction"] == pytest.approx(truth, abs=0.01)
    assert gated["expected_tumor_tiles"] == pytest.approx(np.sum(proba[180:, 1:]))
    assert gated["necrotic_fraction_low"] <= truth <= gated["necrotic_fraction_high"] + 1e-12
    assert gated["response"] == "good" and default["response"] == "poor"
    # 0 keeps every tile: the default.
    pd.testing.assert_frame_equal(
        necrosis_from_probabilities(proba, groups, n_bootstrap=100, tumor_threshold=0.0),
        necrosis_from_probabilities(proba, groups, n_bootstrap=100))


def test_tumor_threshold_also_filters_the_argmax_counts():
    # The first tile's argmax is Non-Viable-Tumor, but P(tumor) = 0.7 is below 0.8.
    proba = np.array([[0.3, 0.4, 0.3], [0.0, 0.2, 0.8], [0.9, 0.05, 0.05]])
    plain = necrosis_from_probabilities(proba, ["A"] * 3, n_bootstrap=0).loc["A"]
    gated = necrosis_from_probabilities(proba, ["A"] * 3, n_bootstrap=0, tumor_threshold=0.8).loc["A"]
    assert plain["argmax_tumor_tiles"] == 2 and plain["necrotic_fraction_argmax"] == 0.5
    assert gated["argmax_tumor_tiles"] == 1 and gated["necrotic_fraction_argmax"] == 0.0
    assert gated["expected_tumor_tiles"] == pytest.approx(1.0)


def test_fraction_argmax_makes_the_count_the_estimate():
    table = necrosis_from_probabilities(PROBA, GROUPS, n_bootstrap=200, fraction="argmax")
    np.testing.assert_allclose(table["necrotic_fraction"], [0.5, 1.0])
    np.testing.assert_allclose(table["necrotic_fraction"], table["necrotic_fraction_argmax"])
    assert table["response"].tolist() == ["poor", "good"]
    # Resampled 0/1 counts: the bounds are fractions of whole tiles of a 3-tile patient.
    assert table.loc["A", "necrotic_fraction_low"] in (0.0, 0.5)
    assert table.loc["B", "necrotic_fraction_low"] == table.loc["B", "necrotic_fraction_high"] == 1.0
    # The expected columns stay what they were.
    np.testing.assert_allclose(table["expected_necrotic_tiles"], [1.0, 1.75])


def _width(table, group="P"):
    row = table.loc[group]
    return float(row["necrotic_fraction_high"] - row["necrotic_fraction_low"])


def test_member_proba_widens_the_interval_to_the_members_spread():
    rng = np.random.default_rng(3)
    n = 300
    # Members that agree on which tiles are tumor but disagree on necrosis: 0.3 to 0.7.
    shares = np.linspace(0.3, 0.7, 5)
    members = np.stack([np.column_stack([np.zeros(n), np.full(n, s), np.full(n, 1 - s)])
                        for s in shares])
    members[:, :, 1:] *= rng.uniform(0.9, 1.0, size=(1, n, 1))
    members[:, :, 0] = 1.0 - members[:, :, 1:].sum(axis=2)
    proba = members.mean(axis=0)
    groups = ["P"] * n
    alone = necrosis_from_probabilities(proba, groups, n_bootstrap=500)
    with_members = necrosis_from_probabilities(proba, groups, n_bootstrap=500, member_proba=members)
    # Same estimate, a wider interval, covering most of the members' own fractions.
    pd.testing.assert_series_equal(alone["necrotic_fraction"], with_members["necrotic_fraction"])
    assert _width(alone) < 0.05
    assert _width(with_members) >= _width(alone)
    assert with_members.loc["P", "necrotic_fraction_low"] < 0.35
    assert with_members.loc["P", "necrotic_fraction_high"] > 0.65
    # Members identical to proba: the tile bootstrap alone (the same draws of tiles).
    same = necrosis_from_probabilities(proba, groups, n_bootstrap=500,
                                       member_proba=np.stack([proba] * 3))
    pd.testing.assert_frame_equal(same, alone)
    # Deterministic under random_state.
    pd.testing.assert_frame_equal(
        necrosis_from_probabilities(proba, groups, n_bootstrap=500, member_proba=members),
        with_members)


def test_error_margin_widens_and_clips():
    proba = _random_proba(60, seed=4)
    groups = ["P"] * 40 + ["Q"] * 20
    plain = necrosis_from_probabilities(proba, groups, n_bootstrap=300)
    wide = necrosis_from_probabilities(proba, groups, n_bootstrap=300, error_margin=0.1)
    np.testing.assert_allclose(wide["necrotic_fraction_low"],
                               np.clip(plain["necrotic_fraction_low"] - 0.1, 0, 1))
    np.testing.assert_allclose(wide["necrotic_fraction_high"],
                               np.clip(plain["necrotic_fraction_high"] + 0.1, 0, 1))
    np.testing.assert_allclose(wide["viable_fraction_low"], 1 - wide["necrotic_fraction_high"])
    # A margin as large as the range: the whole of [0, 1], never beyond.
    whole = necrosis_from_probabilities(proba, groups, n_bootstrap=300, error_margin=1.0)
    assert (whole["necrotic_fraction_low"] == 0.0).all()
    assert (whole["necrotic_fraction_high"] == 1.0).all()
    # Without a bootstrap: the estimate plus and minus the margin.
    near_one = np.tile([0.0, 0.97, 0.03], (10, 1))
    alone = necrosis_from_probabilities(near_one, ["R"] * 10, n_bootstrap=0, error_margin=0.05)
    assert alone.loc["R", "necrotic_fraction_low"] == pytest.approx(0.92)
    assert alone.loc["R", "necrotic_fraction_high"] == 1.0
    # No tumor: still no interval.
    none = necrosis_from_probabilities([[1.0, 0.0, 0.0]], ["N"], error_margin=0.1)
    assert np.isnan(none.loc["N", "necrotic_fraction_low"])


def test_defaults_unchanged():
    # Regression values of the default estimate and interval, as before these options.
    proba = _random_proba(40, seed=1)
    table = necrosis_from_probabilities(proba, ["P"] * 40, n_bootstrap=500)
    explicit = necrosis_from_probabilities(proba, ["P"] * 40, n_bootstrap=500, fraction="expected",
                                           tumor_threshold=None, member_proba=None,
                                           error_margin=None)
    pd.testing.assert_frame_equal(table, explicit)
    expected_columns = [
        "n_tiles", "expected_tumor_tiles", "expected_necrotic_tiles", "necrotic_fraction",
        "necrotic_fraction_low", "necrotic_fraction_high", "viable_fraction",
        "viable_fraction_low", "viable_fraction_high", "argmax_tumor_tiles",
        "necrotic_fraction_argmax", "viable_fraction_argmax", "response", "method"]
    assert table.columns.tolist() == expected_columns
    # Without a calibration set "auto" is the expected count, and says so.
    assert table["method"].tolist() == ["pcc"]
    row = table.loc["P"]
    assert row["necrotic_fraction"] == pytest.approx(proba[:, 1].sum() / proba[:, 1:].sum())
    np.testing.assert_allclose([row["necrotic_fraction_low"], row["necrotic_fraction_high"]],
                               DEFAULT_INTERVAL, rtol=1e-12)


def test_error_margin_from_known_pairs():
    estimates = [0.62, 0.53, 0.40, 0.95, 0.30]
    references = [0.977, 0.009, 0.50, 0.90, 0.25]
    # Absolute errors sorted: 0.05, 0.05, 0.1, 0.357, 0.521.
    assert necrosis_error_margin(estimates, references, confidence=0.5) == pytest.approx(0.1)
    assert necrosis_error_margin(estimates, references, confidence=0.6) == pytest.approx(0.357)
    assert necrosis_error_margin(estimates, references, confidence=0.8) == pytest.approx(0.521)
    # NaN pairs (no tumor) are left out; Series work.
    with_nan = pd.Series(estimates + [np.nan]), pd.Series(references + [0.5])
    assert necrosis_error_margin(*with_nan, confidence=0.5) == pytest.approx(0.1)
    # 19 patients suffice for 95 %: the largest of 19 errors, without a warning.
    errors = np.linspace(0.0, 0.18, 19)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert necrosis_error_margin(errors, np.zeros(19)) == pytest.approx(0.18)
        assert necrosis_error_margin(errors, np.zeros(19), confidence=0.9) == pytest.approx(0.17)


def test_error_margin_with_few_patients_warns_and_takes_the_largest():
    with pytest.warns(FewPatientsWarning, match=r"probability >= 0.67"):
        margin = necrosis_error_margin([0.62, 0.53], [0.977, 0.009])
    assert margin == pytest.approx(0.521)


@pytest.mark.parametrize("estimates, references, message", [
    ([0.5, 0.2], [0.5], "one value per patient"),
    ([np.nan], [0.5], "no patient has both"),
    ([1.5], [0.5], r"estimates must be fractions in \[0, 1\]"),
    ([[0.5]], [0.5], "one-dimensional"),
])
def test_error_margin_invalid_inputs_are_named(estimates, references, message):
    with pytest.raises(ValueError, match=message):
        necrosis_error_margin(estimates, references)


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


class _FixedEnsemble(_FixedProba):
    """Two members, one more necrotic than PROBA and one less."""

    def predict_proba_members(self, X):
        shift = np.array([0.0, 0.05, -0.05])
        base = PROBA[X["row"].to_numpy()]
        return np.clip(np.stack([base + shift, base - shift]), 0, 1)


def test_necrosis_report_passes_the_options_on():
    X = pd.DataFrame({"row": range(5), "patient": GROUPS})
    kwargs = {"n_bootstrap": 100, "fraction": "argmax", "tumor_threshold": 0.5,
              "error_margin": 0.05}
    table = necrosis_report(_FixedEnsemble(), X, "patient", members=True, **kwargs)
    direct = necrosis_from_probabilities(
        PROBA, pd.Series(GROUPS, name="patient"),
        member_proba=_FixedEnsemble().predict_proba_members(X), **kwargs)
    pd.testing.assert_frame_equal(table, direct)
    with pytest.raises(TypeError, match="predict_proba_members"):
        necrosis_report(_FixedProba(), X, "patient", members=True)


def test_necrosis_report_with_a_seed_ensemble_pipeline():
    from sklearn.linear_model import SGDClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from hiercls.estimator.ensemble import SeedEnsemble

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 30)
    X = pd.DataFrame({"a": y + rng.normal(scale=0.8, size=90), "b": rng.normal(size=90)})
    groups = np.repeat(["P1", "P2", "P3"], 30)
    ensemble = SeedEnsemble(SGDClassifier(loss="log_loss", max_iter=5, tol=None),
                            n_members=3, random_state=0)
    pipeline = make_pipeline(StandardScaler(), ensemble).fit(X, y)
    table = necrosis_report(pipeline, X, groups, y=y, n_bootstrap=100, members=True)
    plain = necrosis_report(pipeline, X, groups, y=y, n_bootstrap=100)
    pd.testing.assert_series_equal(table["necrotic_fraction"], plain["necrotic_fraction"])
    assert table["necrotic_fraction_low"].notna().any()


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
    gated = necrosis_from_evaluation(result, n_bootstrap=0, tumor_threshold=0.6, error_margin=0.1)
    # The third tile of A (P(tumor) 0.5) is left out: 0.9 necrotic of 1.8 tumor.
    np.testing.assert_allclose(gated["necrotic_fraction"], [0.9 / 1.8, 1.75 / 1.9])
    np.testing.assert_allclose(gated["necrotic_fraction_low"], [0.9 / 1.8 - 0.1, 1.75 / 1.9 - 0.1])


def _slide_predictions(seed=0):
    """Out-of-fold predictions of three patients, two slides each, with a ``slide`` column."""
    rng = np.random.default_rng(seed)
    parts = []
    for patient, prevalence in (("A", [0.2, 0.5, 0.3]), ("B", [0.3, 0.1, 0.6]),
                                ("C", [0.4, 0.3, 0.3])):
        labels = rng.choice(3, size=90, p=prevalence)
        proba = np.eye(3)[labels] * 2.0 + rng.dirichlet([1.0, 1.0, 1.0], size=90)
        part = pd.DataFrame(proba / proba.sum(axis=1, keepdims=True), columns=list(CLASS_NAMES))
        part["y_true"] = np.asarray(CLASS_NAMES, dtype=object)[labels]
        part["patient"] = patient
        part["fold"] = "ABC".index(patient)
        # Slide 2 holds the patient's viable tiles first: slides differ in their necrosis.
        order = np.argsort(labels == 1, kind="stable")
        part = part.iloc[order].reset_index(drop=True)
        part["slide"] = [f"{patient}-S{1 + (k >= 45)}" for k in range(90)]
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def test_necrosis_from_evaluation_resamples_slides():
    from hiercls.evaluation.quantification import PrevalenceQuantifier

    predictions = _slide_predictions()
    result = EvaluationResult(pd.DataFrame(), predictions, [None] * 3)
    by_tiles = necrosis_from_evaluation(result, method="acc", n_bootstrap=200)
    by_slides = necrosis_from_evaluation(result, method="acc", n_bootstrap=200, slides="slide")
    # Same estimates; the interval is the cluster bootstrap of each patient with the other
    # patients' slides as its calibration set.
    pd.testing.assert_series_equal(by_slides["necrotic_fraction"], by_tiles["necrotic_fraction"])
    assert not np.allclose(by_slides["necrotic_fraction_low"], by_tiles["necrotic_fraction_low"])
    proba = predictions[list(CLASS_NAMES)].to_numpy()
    labels = predictions["y_true"].map(CLASS_NAMES.index).to_numpy()
    inside = (predictions["patient"] == "B").to_numpy()
    quantifier = PrevalenceQuantifier("acc").fit(proba[~inside], labels[~inside],
                                                 groups=predictions["slide"][~inside])
    expected = necrosis_from_probabilities(
        proba[inside], predictions["patient"][inside], method="acc", quantifier=quantifier,
        n_bootstrap=200, random_state=0, slides=predictions["slide"][inside])
    np.testing.assert_allclose(
        by_slides.loc["B", ["necrotic_fraction_low", "necrotic_fraction_high"]].astype(float),
        expected.loc["B", ["necrotic_fraction_low", "necrotic_fraction_high"]].astype(float))
    # The counts resample the slides too; an array of slides is the column.
    counts = necrosis_from_evaluation(result, method="pcc", n_bootstrap=200,
                                      slides=predictions["slide"].to_numpy())
    assert not np.allclose(counts["necrotic_fraction_low"],
                           necrosis_from_evaluation(result, method="pcc", n_bootstrap=200)
                           ["necrotic_fraction_low"])
    with pytest.raises(ValueError, match="names no column of result.predictions"):
        necrosis_from_evaluation(result, slides="case")
    with pytest.raises(ValueError, match="slides has 3 entries"):
        necrosis_from_evaluation(result, slides=["S1", "S2", "S3"])


def test_report_on_real_tiles(real_data_dir):
    from hiercls import make_fusion_pipeline
    from hiercls.data.datasets import load_osteosarcoma_ut
    from hiercls.features.radiomics import transformer

    backend = "fast" if "fast" in getattr(transformer, "BACKENDS", ()) else "pyradiomics"
    X, y, groups = load_osteosarcoma_ut(real_data_dir, subsample=8, random_state=0)
    pipeline = make_fusion_pipeline(preset="none", **(TINY_CLASSIFIER | {"max_epochs": 1}),
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
