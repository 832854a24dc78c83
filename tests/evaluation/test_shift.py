"""Patient shift: how far a representation gives the patient away within a class."""

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from hiercls import HierarchicalFusionClassifier
from hiercls.evaluation.quantification import (
    PrevalenceQuantifier,
    patient_shift,
    rate_shift,
    within_class_separability,
)

from ..conftest import TINY_CLASSIFIER


def _tiles(look, seed=0):
    """Three patients, two classes; each patient's tiles shifted by ``look`` times its own
    offset, the class by a fixed one."""
    rng = np.random.default_rng(seed)
    patients = np.repeat(["p1", "p2", "p3"], 60)
    labels = np.tile([1, 2], 90)
    offsets = {"p1": 0.0, "p2": 1.0, "p3": -1.0}
    features = rng.normal(size=(180, 6)) + 1.5 * labels[:, None]
    features[:, :3] += look * np.array([offsets[p] for p in patients])[:, None]
    return features, labels, patients


def test_separability_grows_with_the_patients_look():
    invariant = within_class_separability(*_tiles(0.0))
    shifted = within_class_separability(*_tiles(2.0))
    # Two classes, three pairs of patients each.
    assert len(invariant) == len(shifted) == 6
    assert set(shifted["class"]) == {"Non-Viable-Tumor", "Viable-Tumor"}
    assert (shifted[["n_a", "n_b"]] == 30).all().all()
    assert invariant["auc"].mean() < 0.65
    assert shifted["auc"].min() > 0.9


def test_groups_with_too_few_tiles_of_a_class_take_no_part():
    features, labels, patients = _tiles(2.0)
    keep = ~((patients == "p3") & (labels == 2))
    keep[np.flatnonzero((patients == "p3") & (labels == 2))[:10]] = True  # 10 of 30 left
    table = within_class_separability(features[keep], labels[keep], patients[keep])
    viable = table[table["class"] == "Viable-Tumor"]
    assert list(zip(viable["group_a"], viable["group_b"])) == [("p1", "p2")]
    assert len(table) == 4


def test_a_representation_that_does_not_vary_within_a_class_tells_no_patient_apart():
    _, labels, patients = _tiles(0.0)
    constant = np.repeat(labels[:, None].astype(float), 4, axis=1)   # the class, nothing else
    table = within_class_separability(constant, labels, patients)
    assert (table["auc"] == 0.5).all()


def test_bad_inputs_are_named():
    features, labels, patients = _tiles(1.0)
    with pytest.raises(ValueError, match="expected one of each per tile"):
        within_class_separability(features, labels, patients[:-1])
    with pytest.raises(ValueError, match="2-D"):
        within_class_separability(features[:, 0], labels, patients)
    broken = features.copy()
    broken[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        within_class_separability(broken, labels, patients)
    with pytest.raises(ValueError, match="min_tiles=100"):
        within_class_separability(features, labels, patients, min_tiles=100)
    with pytest.raises(ValueError, match="below n_splits=5"):
        within_class_separability(features, labels, patients, min_tiles=2)
    with pytest.raises(ValueError, match="one feature or more"):
        within_class_separability(features[:, :0], labels, patients)
    with pytest.raises(ValueError, match="groups must be 1-D"):
        within_class_separability(features, labels, patients[:, None])
    missing = patients.astype(object)
    missing[3] = None
    with pytest.raises(ValueError, match="groups has 1 missing"):
        within_class_separability(features, labels, missing)


def test_patient_shift_probes_the_fused_embedding(synthetic):
    X, y, groups = synthetic
    radiomics = X.drop(columns="image")
    model = HierarchicalFusionClassifier(**{**TINY_CLASSIFIER, "use_image": False,
                                            "random_state": 0}).fit(radiomics, y)
    shift = patient_shift(model, radiomics, y, groups, min_tiles=4, n_splits=2)
    table = within_class_separability(model.embed(radiomics), y, groups, min_tiles=4, n_splits=2)
    assert shift == pytest.approx(table["auc"].mean())
    assert 0.0 <= shift <= 1.0
    # A pipeline's steps before the classifier transform X first.
    pipeline = make_pipeline(FunctionTransformer(lambda frame: frame), model)
    assert patient_shift(pipeline, radiomics, y, groups, min_tiles=4, n_splits=2) == pytest.approx(shift)


def test_patient_shift_needs_an_embedding():
    features, labels, patients = _tiles(1.0)
    model = LogisticRegression().fit(features, labels)
    with pytest.raises(TypeError, match="embed"):
        patient_shift(model, pd.DataFrame(features), labels, patients)


def _posteriors(labels, rng, right=0.7):
    """Noisy posteriors: ``right`` plus a random share of the rest on the true class."""
    p = rng.dirichlet(np.ones(3), size=labels.size) * (1 - right)
    p[np.arange(labels.size), labels] += right
    return p


@pytest.mark.parametrize("recalibrate", [None, "temperature"])
def test_rate_shift_is_zero_on_the_calibration_set_itself(recalibrate):
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 80)
    proba = _posteriors(labels, rng)
    quantifier = PrevalenceQuantifier("pacc", recalibrate).fit(proba, labels)
    table = rate_shift(quantifier, proba, labels)
    # The bag's posteriors are rescaled with the quantifier's temperature, as its rates were.
    assert len(table) == 9
    np.testing.assert_allclose(table["difference"], 0.0, atol=1e-12)
    np.testing.assert_allclose(table["calibration"], quantifier.rates_.T.ravel())
    assert (table["n_tiles"] == 80).all()


def test_rate_shift_points_at_the_class_that_looks_unlike_the_calibration_set():
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1, 2], 100)
    quantifier = PrevalenceQuantifier("pacc").fit(_posteriors(labels, rng), labels)
    # A patient whose non-viable tiles are taken for viable ones half the time.
    bag = np.repeat([1, 2], [60, 40])
    proba = _posteriors(bag, rng)
    confused = np.flatnonzero(bag == 1)[::2]
    proba[confused] = proba[confused][:, [0, 2, 1]]
    table = rate_shift(quantifier, proba, bag).set_index(["true_class", "posterior_class"])
    shifted = table.loc[("Non-Viable-Tumor", "Viable-Tumor"), "difference"]
    assert shifted > 0.25
    assert abs(table.loc[("Viable-Tumor", "Viable-Tumor"), "difference"]) < 0.05
    # No non-tumor tiles in the bag: nothing to compare, said as NaN and 0 tiles.
    absent = table.loc["Non-Tumor"]
    assert absent["bag"].isna().all() and (absent["n_tiles"] == 0).all()
    assert absent["calibration"].notna().all()


def test_rate_shift_names_bad_input():
    rng = np.random.default_rng(2)
    labels = np.repeat([0, 1, 2], 30)
    proba = _posteriors(labels, rng)
    with pytest.raises(NotFittedError):
        rate_shift(PrevalenceQuantifier("pacc"), proba, labels)
    quantifier = PrevalenceQuantifier("pacc").fit(proba, labels)
    with pytest.raises(ValueError, match="expected one label per row"):
        rate_shift(quantifier, proba, labels[:-1])
    with pytest.raises(ValueError, match="proba"):
        rate_shift(quantifier, proba[:, :2], labels)
    with pytest.raises(ValueError, match="label 'stroma'"):
        rate_shift(quantifier, proba, ["Non-Tumor"] * (labels.size - 1) + ["stroma"])


def test_rate_shift_has_no_calibration_rate_for_a_class_the_calibration_set_lacks():
    rng = np.random.default_rng(3)
    labels = np.repeat([0, 1], 50)                 # the counts accept a set without viable
    quantifier = PrevalenceQuantifier("pcc").fit(_posteriors(labels, rng), labels)
    bag = np.array([1, 2, 2])
    table = rate_shift(quantifier, _posteriors(bag, rng), bag).set_index("true_class")
    assert table.loc["Viable-Tumor", "calibration"].isna().all()
    assert table.loc["Viable-Tumor", "bag"].notna().all()
    assert table.loc["Non-Viable-Tumor", "calibration"].notna().all()
