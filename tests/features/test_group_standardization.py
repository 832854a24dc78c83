import numpy as np
import pandas as pd
import pytest

from hiercls import HierarchicalFusionClassifier
from hiercls.features.group_standardization import group_labels, standardize_within_groups

from ..conftest import TINY_CLASSIFIER


def test_each_group_gets_zero_mean_and_unit_std_per_feature_over_tiles_and_views():
    rng = np.random.default_rng(0)
    values = rng.normal(size=(12, 8, 5)) * np.arange(1, 6) + np.arange(5)
    values[6:] = values[6:] * 3 + 10  # the second group: another scale and offset
    groups = np.repeat(["a", "b"], 6)
    out = standardize_within_groups(values, groups, feature_axis=2)
    assert out.shape == values.shape and out.dtype == np.float32
    for group in ("a", "b"):
        block = out[groups == group]
        np.testing.assert_allclose(block.mean(axis=(0, 1)), 0, atol=1e-5)
        np.testing.assert_allclose(block.std(axis=(0, 1)), 1, atol=1e-5)
    # The two groups differed only by an affine map: standardized, they are the same.
    np.testing.assert_allclose(out[:6], standardize_within_groups(values[:6], groups[:6],
                                                                  feature_axis=2), atol=1e-6)


def test_a_constant_feature_is_centred_not_divided_by_zero_and_the_input_is_kept():
    values = np.array([[1.0, 5.0], [3.0, 5.0], [2.0, 5.0]])
    kept = values.copy()
    out = standardize_within_groups(values, [0, 0, 0])
    assert np.isfinite(out).all() and np.all(out[:, 1] == 0)
    np.testing.assert_array_equal(values, kept)


def test_bad_groups_are_named():
    with pytest.raises(ValueError, match="fewer than 2 tiles"):
        standardize_within_groups(np.ones((3, 2)), ["a", "a", "b"])
    with pytest.raises(ValueError, match="one row per group label"):
        standardize_within_groups(np.ones((3, 2)), ["a", "a"])
    with pytest.raises(ValueError, match="no 'slide' column"):
        group_labels(pd.DataFrame({"patient": ["a"]}), "slide")
    with pytest.raises(ValueError, match=r"no value in rows \[1\]"):
        group_labels(pd.DataFrame({"patient": ["a", None]}), "patient")


def _frozen(weights_file, **params):
    return HierarchicalFusionClassifier(**{**TINY_CLASSIFIER, "pretrained": str(weights_file),
                                           "freeze_backbone": True, "cache": None,
                                           "train_split": None, **params})


def test_classifier_predicts_a_group_from_its_own_statistics(synthetic, weights_file):
    X, y, groups = synthetic
    X = X.assign(patient=groups.to_numpy())
    model = _frozen(weights_file, standardize_by="patient").fit(X, y)
    proba = model.predict_proba(X)
    one = X["patient"] == X["patient"].iloc[0]
    # A patient predicted alone is standardized by its own tiles: the same answer.
    np.testing.assert_allclose(model.predict_proba(X[one]), proba[one], atol=1e-6)
    # Shifting all of one patient's radiomics (a stain or scanner offset) changes nothing.
    shifted = X.copy()
    columns = model.radiomic_columns_
    shifted.loc[one, columns] = shifted.loc[one, columns] * 2.0 + 3.0
    np.testing.assert_allclose(model.predict_proba(shifted), proba, atol=1e-5)
    # Without it the same shift moves the answer: the test above can fail.
    plain = _frozen(weights_file).fit(X, y)
    assert np.abs(plain.predict_proba(shifted) - plain.predict_proba(X)).max() > 1e-3


def test_standardize_by_names_what_it_needs(synthetic, weights_file):
    X, y, groups = synthetic
    with pytest.raises(ValueError, match="no 'slide' column"):
        _frozen(weights_file, standardize_by="slide").fit(X, y)
    with pytest.raises(ValueError, match="needs freeze_backbone=True"):
        HierarchicalFusionClassifier(**TINY_CLASSIFIER, standardize_by="patient").fit(
            X.assign(patient=groups.to_numpy()), y)
    with pytest.raises(ValueError, match="standardize_by must be None or the name"):
        _frozen(weights_file, standardize_by=3).fit(X, y)
    model = _frozen(weights_file, standardize_by="patient").fit(
        X.assign(patient=groups.to_numpy()), y)
    with pytest.raises(ValueError, match="fewer than 2 tiles"):
        model.predict_proba(X.assign(patient=groups.to_numpy()).iloc[:1])


def test_radiomics_only_model_standardizes_within_groups(synthetic):
    X, y, groups = synthetic
    X = X.assign(patient=groups.to_numpy())
    model = HierarchicalFusionClassifier(**{**TINY_CLASSIFIER, "use_image": False,
                                            "train_split": None, "standardize_by": "patient"})
    proba = model.fit(X, y).predict_proba(X)
    assert proba.shape == (len(X), 3) and np.allclose(proba.sum(axis=1), 1)
