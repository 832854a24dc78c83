"""The issue's snippet on real TCIA tiles: 60 tiles from 3 patients, a tiny backbone."""

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_validate

import hiercls

from .conftest import TINY_CLASSIFIER


@pytest.fixture(scope="module")
def real_tiles(real_data_dir):
    X, y, groups = hiercls.datasets.load_osteosarcoma_ut(real_data_dir, subsample=20, random_state=0)
    keep = (groups != "P9").to_numpy()  # three patients, 20 tiles each
    return X[keep], y[keep], groups[keep]


def tiny_pipeline():
    return hiercls.make_fusion_pipeline(preset="none", **TINY_CLASSIFIER, radiomics__mask="full",
                                        radiomics__backend="fast")


def test_snippet_runs_on_real_tiles(real_tiles):
    X, y, groups = real_tiles
    assert len(X) == 60 and groups.nunique() == 3
    pipe = tiny_pipeline()
    cv = cross_validate(pipe, X, y, groups=groups, cv=GroupKFold(n_splits=3),
                        scoring=hiercls.metrics.paper_scorers())
    assert len(cv["test_accuracy"]) == 3
    assert np.all(np.isfinite(cv["test_accuracy"]))
    search = GridSearchCV(pipe, {"classifier__lr": [1e-4, 3e-4]}, cv=GroupKFold(3),
                          scoring="accuracy").fit(X, y, groups=groups)
    proba = search.predict_proba(X)
    assert proba.shape == (60, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert set(search.predict(X)) <= set(hiercls.CLASS_NAMES)
    assert list(search.best_estimator_.classes_) == list(hiercls.CLASS_NAMES)
