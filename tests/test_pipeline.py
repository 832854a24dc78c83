import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_validate

import hiercls
from hiercls.pipeline import make_radiomics_scaler

from .conftest import TINY_CLASSIFIER


@pytest.fixture(scope="module")
def tiles():
    X, y, groups = hiercls.datasets.make_synthetic_tiles(n_tiles=36, n_patients=3, size=32, random_state=1)
    return X, y, groups


def tiny_pipeline(**params):
    classifier = {k: v for k, v in TINY_CLASSIFIER.items()}
    return hiercls.make_fusion_pipeline(**classifier, radiomics__mask="full", **params)


def test_pipeline_has_the_three_named_steps_and_routes_parameters():
    pipe = tiny_pipeline(radiomics__channel="hematoxylin", classifier__lr=3e-4)
    assert list(pipe.named_steps) == ["radiomics", "scale", "classifier"]
    assert pipe.get_params()["radiomics__channel"] == "hematoxylin"
    assert pipe.get_params()["classifier__lr"] == 3e-4
    assert pipe.get_params()["classifier__backbone"] == "test_efficientnet"


def test_scaler_standardizes_radiomics_with_training_statistics_only():
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"image": ["a"] * 50, "firstorder_Mean": rng.normal(10, 3, 50),
                          "tissue__shape2D_Perimeter": rng.normal(-4, 2, 50), "note": ["x"] * 50})
    scaler = make_radiomics_scaler().fit(train)
    out = scaler.transform(train)
    assert set(out.columns) == set(train.columns)
    np.testing.assert_allclose(out["firstorder_Mean"].mean(), 0.0, atol=1e-12)
    np.testing.assert_allclose(out["firstorder_Mean"].std(ddof=0), 1.0)
    assert out["image"].tolist() == train["image"].tolist()
    test = train.iloc[:5].assign(firstorder_Mean=100.0)
    expected = (100.0 - train["firstorder_Mean"].mean()) / train["firstorder_Mean"].std(ddof=0)
    np.testing.assert_allclose(scaler.transform(test)["firstorder_Mean"], expected)


def test_pipeline_fits_on_tiles_and_predicts_the_factorization(tiles):
    X, y, groups = tiles
    pipe = tiny_pipeline().fit(X, y, classifier__groups=groups)
    proba = pipe.predict_proba(X)
    assert proba.shape == (len(X), 3)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-6)
    assert set(pipe.predict(X)) <= {0, 1, 2}


def test_cross_validate_by_patient_with_paper_scorers(tiles):
    X, y, groups = tiles
    result = cross_validate(tiny_pipeline(), X, y, groups=groups, cv=GroupKFold(n_splits=3),
                            scoring=hiercls.metrics.paper_scorers())
    assert len(result["test_accuracy"]) == 3
    assert np.all((result["test_accuracy"] >= 0) & (result["test_accuracy"] <= 1))


def test_grid_search_with_groups_refits_the_best(tiles):
    X, y, groups = tiles
    search = GridSearchCV(tiny_pipeline(), {"classifier__lr": [1e-4, 1e-3]},
                          cv=GroupKFold(n_splits=3), scoring="accuracy")
    search.fit(X, y, groups=groups)
    assert search.best_params_["classifier__lr"] in (1e-4, 1e-3)
    assert search.predict_proba(X).shape == (len(X), 3)


def test_fewer_groups_than_folds_is_sklearns_error(tiles):
    X, y, groups = tiles
    with pytest.raises(ValueError, match="groups"):
        cross_validate(tiny_pipeline(), X, y, groups=groups, cv=GroupKFold(n_splits=5))
