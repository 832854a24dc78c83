"""Quantification: prevalences of bags under label shift (hiercls.evaluation.quantification)."""

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from hiercls.evaluation.necrosis import necrosis_from_probabilities
from hiercls.evaluation.quantification import (
    BASELINE,
    DEFAULT_METHOD,
    DEFAULT_RECALIBRATE,
    METHODS,
    PrevalenceQuantifier,
    SingularAdjustmentError,
    choose_setting,
    fit_quantifier,
    necrotic_fraction,
    out_of_fold_proba,
    quantification_scores,
)


def _posteriors(labels, seed, strength=1.2):
    """Posteriors of an imperfect classifier: the true class gets a logit bonus."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(labels.size, 3))
    logits[np.arange(labels.size), labels] += strength
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


def _bag(counts, seed):
    labels = np.repeat([0, 1, 2], counts)
    return _posteriors(labels, seed), labels


@pytest.fixture(scope="module")
def calibration():
    labels = np.random.default_rng(0).integers(0, 3, 3000)   # balanced class mix
    return _posteriors(labels, 1), labels


def test_adjusted_methods_recover_a_shifted_fraction_that_the_counts_shrink(calibration):
    bag, labels = _bag([100, 380, 20], seed=2)               # necrotic fraction 0.95
    truth = 380 / 400
    pcc = PrevalenceQuantifier("pcc").fit(*calibration).necrotic_fraction(bag)
    assert truth - pcc > 0.15                                # shrunk towards the mix (0.5)
    for method in ("acc", "pacc", "emq", "dmy", "kdey"):
        estimate = PrevalenceQuantifier(method).fit(*calibration).necrotic_fraction(bag)
        assert abs(estimate - truth) < 0.06, method


@pytest.mark.parametrize("method", METHODS)
def test_every_method_gives_prevalences(calibration, method):
    bag, _ = _bag([30, 30, 40], seed=3)
    prevalence = PrevalenceQuantifier(method).fit(*calibration).quantify(bag)
    assert prevalence.shape == (3,) and prevalence.min() >= 0
    assert prevalence.sum() == pytest.approx(1.0)


def test_missing_class_in_calibration_is_named(calibration):
    proba, labels = calibration
    keep = labels != 1
    with pytest.raises(SingularAdjustmentError, match="Non-Viable-Tumor"):
        PrevalenceQuantifier("pacc").fit(proba[keep], labels[keep])
    # The counts need no calibration rates.
    PrevalenceQuantifier("pcc").fit(proba[keep], labels[keep])


def test_singular_adjustment_is_refused():
    # The classifier says the same of Non-Viable and Viable tiles: no inverse exists.
    labels = np.repeat([0, 1, 2], 50)
    proba = np.tile([0.2, 0.4, 0.4], (150, 1))
    proba[labels == 0] = [0.8, 0.1, 0.1]
    with pytest.raises(SingularAdjustmentError, match="singular"):
        PrevalenceQuantifier("pacc").fit(proba, labels)


def test_bad_inputs_are_named(calibration):
    with pytest.raises(ValueError, match="method must be one of"):
        PrevalenceQuantifier("hdy").fit(*calibration)
    with pytest.raises(ValueError, match="calibration proba must have rows summing to 1"):
        PrevalenceQuantifier().fit(calibration[0] * 0.5, calibration[1])
    quantifier = PrevalenceQuantifier().fit(*calibration)
    with pytest.raises(ValueError, match="proba"):
        quantifier.quantify(np.empty((0, 3)))
    with pytest.raises(ValueError, match="one label per row"):
        PrevalenceQuantifier().fit(calibration[0], calibration[1][:-1])


def test_temperature_recalibration_rescales_calibration_and_bags(calibration):
    proba, labels = calibration
    sharp = np.exp(np.log(proba) * 3)                     # over-confident posteriors
    sharp /= sharp.sum(axis=1, keepdims=True)
    quantifier = PrevalenceQuantifier("emq", "temperature").fit(sharp, labels)
    assert quantifier.temperature_ > 2                    # undoes most of the sharpening
    np.testing.assert_array_equal(quantifier.calibration_proba_, sharp)   # kept as given
    bag, _ = _bag([20, 70, 10], seed=14)
    bag = np.exp(np.log(bag) * 3)
    bag /= bag.sum(axis=1, keepdims=True)
    plain = PrevalenceQuantifier("emq", None).fit(sharp, labels)
    assert plain.temperature_ == 1.0
    assert not np.allclose(quantifier.quantify(bag), plain.quantify(bag))
    with pytest.raises(ValueError, match="recalibrate must be one of"):
        PrevalenceQuantifier("emq", "platt").fit(sharp, labels)


def test_fitted_state_round_trips(calibration):
    quantifier = PrevalenceQuantifier("pacc", "temperature").fit(*calibration)
    state = quantifier.get_fitted_state()
    restored = PrevalenceQuantifier().set_fitted_state(state)
    assert (restored.method, restored.recalibrate) == ("pacc", "temperature")
    bag, _ = _bag([10, 60, 30], seed=15)
    np.testing.assert_array_equal(restored.quantify(bag), quantifier.quantify(bag))
    with pytest.raises(ValueError, match="state must be a dict"):
        PrevalenceQuantifier().set_fitted_state({"method": "pacc"})


def test_bootstrap_resamples_bag_and_calibration_reproducibly(calibration):
    bag, _ = _bag([10, 60, 30], seed=4)
    quantifier = PrevalenceQuantifier("pacc").fit(*calibration)
    a = quantifier.bootstrap(bag, 50, random_state=7)
    b = quantifier.bootstrap(bag, 50, random_state=7)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (50, 3) and np.allclose(a.sum(axis=1), 1.0)
    assert necrotic_fraction(a).std() > 0


def _two_slides(n=50):
    """A bag of two slides, one all necrotic and one all viable, with sure posteriors."""
    proba = np.repeat([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], n, axis=0)
    return proba, np.repeat(["S1", "S2"], n)


def test_bootstrap_by_slide_resamples_whole_slides(calibration):
    proba, slides = _two_slides()
    quantifier = PrevalenceQuantifier("pcc").fit(*calibration)
    by_slide = necrotic_fraction(quantifier.bootstrap(proba, 200, random_state=0, groups=slides))
    # Two whole slides drawn with replacement: both necrotic, both viable, or one of each.
    assert set(np.round(by_slide, 12)) == {0.0, 0.5, 1.0}
    by_tile = necrotic_fraction(quantifier.bootstrap(proba, 200, random_state=0))
    assert np.unique(by_tile).size > 10 and by_tile.std() < by_slide.std() / 5
    # One slide is the whole bag: its tiles are resampled.
    one = necrotic_fraction(quantifier.bootstrap(proba, 50, random_state=0, groups=["S"] * 100))
    np.testing.assert_array_equal(one, necrotic_fraction(
        quantifier.bootstrap(proba, 50, random_state=0)))
    with pytest.raises(ValueError, match="groups must hold one group"):
        quantifier.bootstrap(proba, 5, groups=slides[:10])
    with pytest.raises(ValueError, match="groups has missing values"):
        quantifier.bootstrap(proba, 5, groups=[None] * 100)


def test_calibration_slides_widen_the_interval_and_keep_every_class(calibration):
    proba, labels = calibration
    # 12 slides whose stain tilts the classifier its own way: the rates vary by slide.
    slides = np.arange(labels.size) % 12
    tilt = np.exp(np.random.default_rng(3).normal(0.0, 1.0, (12, 3)))[slides]
    shifted = proba * tilt / (proba * tilt).sum(axis=1, keepdims=True)
    bag, _ = _bag([200, 1200, 600], seed=4)   # large: the calibration's share shows
    plain = PrevalenceQuantifier("pacc").fit(shifted, labels)
    grouped = PrevalenceQuantifier("pacc").fit(shifted, labels, groups=slides)
    np.testing.assert_array_equal(grouped.quantify(bag), plain.quantify(bag))  # no estimate moves
    spread = [necrotic_fraction(q.bootstrap(bag, 100, random_state=1)).std()
              for q in (plain, grouped)]
    assert spread[1] > 2 * spread[0]
    # A class on one slide only: every resample still holds it (redrawn otherwise).
    rare = labels.copy()
    rare[(slides != 0) & (rare == 1)] = 2
    assert np.unique(slides[rare == 1]).tolist() == [0]
    quantifier = PrevalenceQuantifier("acc").fit(proba, rare, groups=slides)
    assert np.isfinite(quantifier.bootstrap(bag, 40, random_state=2)).all()
    with pytest.raises(ValueError, match="calibration groups must hold one group"):
        PrevalenceQuantifier("acc").fit(proba, labels, groups=slides[:5])
    state = grouped.get_fitted_state()
    restored = PrevalenceQuantifier().set_fitted_state(state)
    np.testing.assert_array_equal(restored.calibration_groups_, grouped.calibration_groups_)
    del state["calibration_groups_"]                  # a file written before slides were kept
    assert PrevalenceQuantifier().set_fitted_state(state).calibration_groups_ is None


def test_necrosis_from_probabilities_resamples_slides_within_each_group(calibration):
    proba, slides = _two_slides()
    groups = ["A"] * 100
    for method, quantifier in (("pcc", None), ("acc", calibration)):
        table = necrosis_from_probabilities(proba, groups, method=method, quantifier=quantifier,
                                            slides=slides, n_bootstrap=200)
        plain = necrosis_from_probabilities(proba, groups, method=method, quantifier=quantifier,
                                            n_bootstrap=200)
        assert table["necrotic_fraction"].equals(plain["necrotic_fraction"])
        width = table["necrotic_fraction_high"] - table["necrotic_fraction_low"]
        plain_width = plain["necrotic_fraction_high"] - plain["necrotic_fraction_low"]
        assert float(width.iloc[0]) > 0.8 and float(width.iloc[0]) > 2 * float(plain_width.iloc[0])
    with pytest.raises(ValueError, match="slides must hold one group"):
        necrosis_from_probabilities(proba, groups, slides=slides[:3])


def test_necrosis_from_probabilities_with_a_quantifier(calibration):
    bag_a, _ = _bag([50, 190, 10], seed=5)                   # 0.95 necrotic
    bag_b, _ = _bag([100, 150, 450], seed=6)                 # 0.25 necrotic
    proba = np.vstack([bag_a, bag_b])
    groups = ["A"] * 250 + ["B"] * 700
    counts = necrosis_from_probabilities(proba, groups, n_bootstrap=0)
    table = necrosis_from_probabilities(proba, groups, quantifier=calibration, n_bootstrap=200)
    assert counts["method"].tolist() == ["pcc", "pcc"]
    assert table["method"].tolist() == [DEFAULT_METHOD] * 2
    truth = np.array([0.95, 0.25])
    assert (np.abs(table["necrotic_fraction"] - truth) < 0.05).all()
    assert (np.abs(counts["necrotic_fraction"] - truth) > 0.14).all()
    assert ((table["necrotic_fraction_low"] <= truth)
            & (truth <= table["necrotic_fraction_high"])).all()
    assert table.loc["A", "response"] == "good" and counts.loc["A", "response"] == "poor"
    # A fitted quantifier gives the same, and another method can be asked of it.
    fitted = PrevalenceQuantifier(DEFAULT_METHOD, DEFAULT_RECALIBRATE).fit(*calibration)
    same = necrosis_from_probabilities(proba, groups, quantifier=fitted, n_bootstrap=200)
    pd.testing.assert_frame_equal(table, same)
    emq = necrosis_from_probabilities(proba, groups, method="emq", quantifier=fitted,
                                      n_bootstrap=0)
    assert emq["method"].tolist() == ["emq", "emq"]


def test_adjusted_method_needs_a_calibration_set_and_no_tumor_threshold(calibration):
    bag, _ = _bag([10, 10, 10], seed=8)
    with pytest.raises(ValueError, match="needs a calibration set"):
        necrosis_from_probabilities(bag, ["A"] * 30, method="pacc")
    with pytest.raises(ValueError, match="tumor_threshold applies to the counts"):
        necrosis_from_probabilities(bag, ["A"] * 30, quantifier=calibration, tumor_threshold=0.5)
    with pytest.raises(ValueError, match="method must be 'auto' or one of"):
        necrosis_from_probabilities(bag, ["A"] * 30, method="median")
    with pytest.raises(TypeError, match="quantifier must be"):
        necrosis_from_probabilities(bag, ["A"] * 30, quantifier="pacc")


def test_a_bag_without_tumor_has_no_fraction(calibration):
    bag, _ = _bag([60, 0, 0], seed=9)
    table = necrosis_from_probabilities(np.tile([1.0, 0.0, 0.0], (60, 1)), ["N"] * 60,
                                        quantifier=calibration, n_bootstrap=20)
    assert np.isnan(table.loc["N", "necrotic_fraction"]) and table.loc["N", "response"] == "no tumor"


def _features(labels, seed):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(size=(labels.size, 4)) + labels[:, None] * [1.0, 0.5, 0, 0],
                        columns=list("abcd"))


def test_out_of_fold_proba_by_tiles_slide_and_patient():
    labels = np.tile([0, 1, 2], 60)
    X = _features(labels, 10)
    slides = np.repeat(np.arange(12), 15)
    patients = slides // 4
    model = LogisticRegression()
    by_tiles = out_of_fold_proba(model, X, labels, by="tiles")
    by_slide = out_of_fold_proba(model, X, labels, groups=slides, by="slide")
    assert by_tiles.shape == (180, 3) and np.allclose(by_slide.sum(axis=1), 1.0)
    assert not np.allclose(by_tiles, by_slide)
    by_patient = out_of_fold_proba(model, X, labels, groups=patients, by="patient")
    assert not np.isnan(by_patient).any()
    quantifier = fit_quantifier(model, X, labels, groups=slides)
    assert quantifier.method == DEFAULT_METHOD and quantifier.calibration_proba_.shape == (180, 3)


def test_out_of_fold_proba_refuses_folds_without_a_class():
    labels = np.repeat([0, 1, 2], 20)
    X = _features(labels, 11)
    with pytest.raises(ValueError, match="fold 0 of by='patient' has no training tile"):
        out_of_fold_proba(LogisticRegression(), X, labels, groups=labels, by="patient",
                          n_splits=3)
    with pytest.raises(ValueError, match="needs groups"):
        out_of_fold_proba(LogisticRegression(), X, labels, by="slide")
    with pytest.raises(ValueError, match="by must be one of"):
        out_of_fold_proba(LogisticRegression(), X, labels, by="case")


def test_criterion_tells_adjusted_from_counts_on_shifted_slides():
    # Slides with very different necrotic fractions: the shift the criterion must see.
    labels, slides = [], []
    for slide, share in enumerate([0.95, 0.9, 0.1, 0.05, 0.5, 0.6]):
        n_tumor = 60
        n_nec = int(share * n_tumor)
        labels += [0] * 30 + [1] * n_nec + [2] * (n_tumor - n_nec)
        slides += [slide] * 90
    labels = np.array(labels)
    proba = _posteriors(labels, 13)
    scores = quantification_scores(proba, labels, np.array(slides), methods=("pcc", "pacc"),
                                   app_folds=3, app_prevalences=6)
    assert list(scores.index) == [("pcc", "none"), ("pcc", "temperature"), ("pacc", "none"),
                                  ("pacc", "temperature"), (BASELINE, "none")]
    pacc, pcc = scores.loc[("pacc", "none")], scores.loc[("pcc", "none")]
    assert pacc["bag_mae"] < pcc["bag_mae"] - 0.1
    assert pacc["app_mae"] < pcc["app_mae"]
    assert (scores["n_bags"] == 6).all() and (scores["app_samples"] > 0).all()
    np.testing.assert_allclose(scores["score"], scores[["bag_mae", "app_mae"]].mean(axis=1))
    # The training mix answers every slide alike: far off slides of 0.05 and 0.95.
    mlpe = scores.loc[(BASELINE, "none")]
    assert mlpe["bag_mae"] > pacc["bag_mae"] + 0.2


def test_the_baseline_answers_the_other_bags_mix():
    labels = np.array([1, 1, 2, 2] * 5 + [1, 1, 1, 2] * 5)   # slide 0: 0.5, slide 1: 0.75
    slides = np.repeat([0, 1], 20)
    scores = quantification_scores(_posteriors(labels, 5), labels, slides, methods=("pcc",),
                                   app_folds=0)
    # Each slide is scored with the other's mix: |0.75 - 0.5| both ways.
    assert scores.loc[(BASELINE, "none"), "bag_mae"] == pytest.approx(0.25)
    assert np.isnan(scores.loc[(BASELINE, "none"), "app_mae"])
    assert scores.loc[(BASELINE, "none"), "score"] == pytest.approx(0.25)


def _scores(**settings):
    index = pd.MultiIndex.from_tuples([("acc", "none"), ("emq", "temperature"), (BASELINE, "none")],
                                      names=["method", "recalibrate"])
    return {name: pd.DataFrame({"score": values}, index=index) for name, values in settings.items()}


def test_choose_setting_without_shift_takes_the_lowest_score():
    scores = _scores(image=[0.03, 0.02, 0.3], radiomics=[0.05, 0.06, 0.3])
    assert choose_setting(scores) == ("image", "emq", "temperature")


def test_choose_setting_with_shift_takes_the_least_shifted_setting_that_beats_the_mix():
    scores = _scores(image=[0.03, 0.02, 0.3], radiomics=[0.05, 0.06, 0.3],
                     useless=[0.4, 0.5, 0.3])
    shift = {"image": 0.9, "radiomics": 0.75, "useless": 0.5}
    # "useless" is the least shifted but no better than the training mix: not eligible.
    assert choose_setting(scores, shift) == ("radiomics", "acc", "none")
    # A setting without a shift (one standardized with its bag's statistics) is not
    # chosen by shift, however low its score.
    scores["standardized"] = scores["image"].assign(score=[0.01, 0.01, 0.3])
    assert choose_setting(scores, shift) == ("radiomics", "acc", "none")
    # Where no setting beats its mix, the lowest score of all.
    flat = _scores(a=[0.4, 0.5, 0.3], b=[0.35, 0.6, 0.3])
    assert choose_setting(flat, {"a": 0.5, "b": 0.9}) == ("b", "acc", "none")


def test_choose_setting_refuses_what_it_cannot_use():
    with pytest.raises(ValueError, match="scores is empty"):
        choose_setting({})
    with pytest.raises(ValueError, match=r"settings without scores: \['radiomics'\]"):
        choose_setting(_scores(image=[0.1, 0.1, 0.3]), {"image": 0.8, "radiomics": 0.7})
    with pytest.raises(ValueError, match="every fit failed"):
        choose_setting(_scores(image=[np.nan, np.nan, 0.3]))
    with pytest.raises(ValueError, match=r"non-finite values \{'image': nan\}"):
        choose_setting(_scores(image=[0.1, 0.1, 0.3], text=[0.2, 0.2, 0.3]),
                       {"image": np.nan, "text": 0.7})
    with pytest.raises(ValueError, match="no 'score' column"):
        choose_setting({"image": pd.DataFrame({"bag_mae": [0.1]})})


def test_choose_setting_without_a_measured_baseline_has_nothing_to_beat():
    # The baseline's fits failed (NaN): the setting competes on shift, not on score alone.
    scores = _scores(image=[0.03, 0.02, 0.3], radiomics=[0.05, 0.06, np.nan])
    assert choose_setting(scores, {"image": 0.9, "radiomics": 0.7}) == ("radiomics", "acc", "none")
