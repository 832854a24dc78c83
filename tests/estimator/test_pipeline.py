import numpy as np
import pandas as pd
import pytest
import sklearn
import torch
from sklearn.model_selection import GridSearchCV, GroupKFold, cross_validate

import hiercls
from hiercls import HierarchicalFusionClassifier, RadiomicsTransformer
from hiercls.estimator.pipeline import make_radiomics_scaler

from ..conftest import TINY_CLASSIFIER


@pytest.fixture(scope="module")
def tiles():
    X, y, groups = hiercls.datasets.make_synthetic_tiles(n_tiles=36, n_patients=3, size=32, random_state=1)
    return X, y, groups


def tiny_pipeline(**params):
    return hiercls.make_fusion_pipeline(preset="none", **{**TINY_CLASSIFIER, "radiomics__mask": "full", **params})


def test_pipeline_has_the_five_named_steps_and_routes_parameters():
    pipe = tiny_pipeline(radiomics__channel="hematoxylin", classifier__lr=3e-4,
                         stain__method="reinhard")
    assert list(pipe.named_steps) == ["resolution", "stain", "radiomics", "scale", "classifier"]
    assert tuple(pipe.named_steps) == hiercls.estimator.pipeline.STEP_NAMES
    assert pipe.get_params()["stain__method"] == "reinhard"
    # Off unless asked for: today's pipelines compute what they did.
    assert tiny_pipeline().get_params()["stain__method"] is None
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
    # The pipeline's probabilities are [pA0, pA1 pB0, pA1 pB1] of the classifier's two
    # heads on the radiomics and standardization the pipeline fitted.
    classifier = pipe.named_steps["classifier"]
    logits = torch.cat([output[0] for output in classifier.forward_iter(pipe[:-1].transform(X))])
    p_a, p_b = logits[:, :2].softmax(1).numpy(), logits[:, 2:].softmax(1).numpy()
    expected = np.stack([p_a[:, 0], p_a[:, 1] * p_b[:, 0], p_a[:, 1] * p_b[:, 1]], axis=1)
    np.testing.assert_allclose(proba, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(pipe.predict(X), proba.argmax(1))


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
    scores = search.cv_results_["mean_test_score"]
    assert search.best_index_ == int(np.argmax(scores))
    assert search.best_params_ == search.cv_results_["params"][search.best_index_]
    refit = search.best_estimator_.named_steps["classifier"]
    assert refit.lr == search.best_params_["classifier__lr"]
    assert len(refit.history_) == TINY_CLASSIFIER["max_epochs"]  # refit on all tiles
    np.testing.assert_array_equal(search.predict_proba(X), search.best_estimator_.predict_proba(X))


def test_fewer_groups_than_folds_is_sklearns_error(tiles):
    X, y, groups = tiles
    with pytest.raises(ValueError, match="groups"):
        cross_validate(tiny_pipeline(), X, y, groups=groups, cv=GroupKFold(n_splits=5))


# --- the patients of the early-stopping split -----------------------------------------


class RecordingClassifier(HierarchicalFusionClassifier):
    """Records, for each fit, the patients given to its internal validation split."""

    fits = []  # shared by the clones a search makes

    def get_split_datasets(self, X, y=None, groups=None, **fit_params):
        train, valid = super().get_split_datasets(X, y, groups=groups, **fit_params)
        RecordingClassifier.fits.append(
            None if groups is None else (np.asarray(groups), train.indices, valid.indices))
        return train, valid


def _recording_pipeline():
    RecordingClassifier.fits = []
    pipe = tiny_pipeline(max_epochs=1)
    return pipe.set_params(classifier=RecordingClassifier(**{**TINY_CLASSIFIER, "max_epochs": 1}))


def _run(route, protocol, X, y, groups):
    pipe = _recording_pipeline()
    cv = GroupKFold(n_splits=3)
    if route == "legacy":
        extra = {"classifier__groups": groups}
    elif route in ("routing", "routing-off"):
        pipe.named_steps["classifier"].set_fit_request(groups=route == "routing")
        extra = {}
    else:  # neither: the patients reach the search's splitter only
        extra = {}
    if protocol == "grid":
        GridSearchCV(pipe, {"classifier__lr": [1e-4, 1e-3]}, cv=cv, scoring="accuracy").fit(
            X, y, groups=groups, **extra)
    elif route in ("routing", "routing-off"):
        cross_validate(pipe, X, y, cv=cv, params={"groups": groups}, scoring="accuracy")
    else:
        cross_validate(pipe, X, y, groups=groups, cv=cv, params=extra, scoring="accuracy")
    return RecordingClassifier.fits


@pytest.mark.parametrize("protocol", ["grid", "cross_validate"])
@pytest.mark.parametrize("route", ["legacy", "routing"])
def test_every_inner_fit_splits_by_the_training_folds_patients(tiles, route, protocol):
    X, y, groups = tiles
    groups = np.asarray(groups)
    folds = [groups[train] for train, _ in GroupKFold(n_splits=3).split(X, y, groups)]
    expected = folds * 2 + [groups] if protocol == "grid" else folds  # 2 candidates, refit
    with sklearn.config_context(enable_metadata_routing=route == "routing"):
        fits = _run(route, protocol, X, y, groups)
    assert len(fits) == len(expected)
    for received, fold_groups in zip(fits, expected):
        assert received is not None, "an inner fit got no patients"
        patients, train, valid = received
        np.testing.assert_array_equal(patients, fold_groups)
        # ... and held out whole patients of that fold.
        assert set(patients[train]).isdisjoint(patients[valid])
        assert set(patients[train]) | set(patients[valid]) == set(fold_groups)
    assert not sklearn.get_config()["enable_metadata_routing"]


def test_without_a_route_the_inner_split_draws_tiles(tiles):
    X, y, groups = tiles
    fits = _run("none", "grid", X, y, groups)
    assert fits == [None] * 7


@pytest.mark.parametrize("protocol", ["grid", "cross_validate"])
def test_routing_with_groups_not_requested_keeps_the_tile_split(tiles, protocol):
    # set_fit_request(groups=False) is the documented way to keep the tile split under
    # metadata routing: nothing may route the patients around it.
    X, y, groups = tiles
    with sklearn.config_context(enable_metadata_routing=True):
        fits = _run("routing-off", protocol, X, y, np.asarray(groups))
    assert fits and fits == [None] * len(fits)


def test_pyradiomics_backend_end_to_end_in_a_pipeline():
    X, y, _ = hiercls.datasets.make_synthetic_tiles(n_tiles=9, n_patients=3, size=24, random_state=2)
    pipe = tiny_pipeline(max_epochs=1, train_split=None, radiomics__backend="pyradiomics")
    proba = pipe.fit(X, y).predict_proba(X)
    assert proba.shape == (len(X), 3)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-6)
    features = pipe.named_steps["radiomics"].transform(X)
    reference = RadiomicsTransformer(backend="fast", mask="full").fit_transform(X)
    names = pipe.named_steps["classifier"].radiomic_columns_
    assert len(names) == 29
    np.testing.assert_allclose(features[names], reference[names], rtol=1e-6)
