"""Patient shift: how far a representation gives the patient away within a class."""

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from hiercls import HierarchicalFusionClassifier
from hiercls.evaluation.quantification import patient_shift, within_class_separability

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
