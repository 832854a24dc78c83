"""cross_validate_by_patient: scikit-learn's cross_validate with patients held out."""

import numpy as np
import pandas as pd
import pytest
import sklearn
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from hiercls import make_fusion_pipeline
from hiercls.data.datasets import make_synthetic_tiles
from hiercls.data.labels import CLASS_NAMES
from hiercls.evaluation.cross_validation import EvaluationResult, cross_validate_by_patient
from hiercls.evaluation.metrics import paper_metrics
from hiercls.features.radiomics import RadiomicsTransformer

from ..conftest import TINY_CLASSIFIER


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """One leave-one-patient-out run of the fusion pipeline, with every call of the
    radiomics transform recorded (the index of the tiles it got)."""
    X, y, groups = make_synthetic_tiles(n_tiles=36, n_patients=3, size=32, random_state=0)
    pipeline = make_fusion_pipeline(preset="none", **(TINY_CLASSIFIER | {"max_epochs": 1}),
                                    radiomics__mask="full", radiomics__backend="fast")
    calls = []
    transform = RadiomicsTransformer.transform

    def counting(self, X):
        calls.append(tuple(X.index))
        return transform(self, X)

    with pytest.MonkeyPatch.context() as patch:
        # A module-scoped fixture runs before the autouse cache isolation.
        patch.setenv("HIERCLS_CACHE_DIR", str(tmp_path_factory.mktemp("hiercls-cache")))
        patch.setattr(RadiomicsTransformer, "transform", counting)
        result = cross_validate_by_patient(pipeline, X, y, groups, verbose=0)
        manual = []
        for train, test in GroupKFold(n_splits=3).split(X, y, groups):
            model = clone(pipeline).fit(X.iloc[train], y.iloc[train],
                                        classifier__groups=np.asarray(groups)[train])
            classifier = model.named_steps["classifier"]
            features = model[:-1].transform(X.iloc[test])
            manual.append((test, model.predict_proba(X.iloc[test]),
                           classifier.gate_weights(features), classifier.history_))
    return X, y, groups, result, calls, manual


def test_predictions_equal_a_manual_per_fold_fit(evaluated):
    X, y, groups, result, _, manual = evaluated
    assert isinstance(result, EvaluationResult)
    predictions = result.predictions
    assert predictions.index.equals(X.index)
    for fold, (test, proba, gates, history) in enumerate(manual):
        part = predictions.iloc[test]
        assert (part["fold"] == fold).all()
        np.testing.assert_allclose(part[list(CLASS_NAMES)].to_numpy(), proba, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(part["gate_image"].to_numpy(), gates["image"].to_numpy(),
                                   rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(part["gate_radiomics"].to_numpy(),
                                   gates["radiomics"].to_numpy(), rtol=1e-6, atol=1e-7)
        assert part["patient"].tolist() == list(np.asarray(groups)[test])
        assert part["y_true"].tolist() == [CLASS_NAMES[code] for code in np.asarray(y)[test]]
        assert len(result.histories[fold]) == len(history) == 1
        patients = ", ".join(np.unique(np.asarray(groups)[test]))
        expected = paper_metrics(np.asarray(y)[test], part[list(CLASS_NAMES)].to_numpy())
        row = result.scores.loc[patients]
        assert list(row.index) == list(expected)
        np.testing.assert_allclose(row.to_numpy(dtype=float), list(expected.values()))


def test_radiomics_transform_runs_once_per_fold_on_the_test_tiles(evaluated):
    X, _, _, result, calls, manual = evaluated
    # The calls the manual loop made (fit and two transforms per fold) come after ours.
    ours = calls[:len(calls) - 3 * len(manual)]
    # Per fold: one call in the fit on its training tiles, one on its test tiles.
    assert len(ours) == 2 * len(manual)
    for fold in range(len(manual)):
        is_test = result.predictions["fold"].to_numpy() == fold
        assert sum(call == tuple(X.index[is_test]) for call in ours) == 1
        assert sum(call == tuple(X.index[~is_test]) for call in ours) == 1


class GroupsRecorder(ClassifierMixin, BaseEstimator):
    """Predicts class frequencies; records the groups each fit gets."""

    fits = []

    def fit(self, X, y, groups=None):
        type(self).fits.append(None if groups is None else list(groups))
        self.classes_ = np.unique(y)
        self.prior_ = np.bincount(np.searchsorted(self.classes_, y), minlength=3) / len(y)
        return self

    def predict_proba(self, X):
        return np.tile(self.prior_, (len(X), 1))


@pytest.fixture
def table():
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(30, 2)), columns=["a", "b"])
    y = pd.Series(np.tile([0, 1, 2], 10))
    groups = pd.Series(np.repeat(["P1", "P2", "P3", "P4", "P5"], 6))
    return X, y, groups


@pytest.mark.parametrize("wrap", [
    lambda est: est,
    lambda est: Pipeline([("scale", StandardScaler()), ("model", est)]),
    lambda est: Pipeline([("outer", Pipeline([("scale", StandardScaler()), ("inner", est)]))]),
], ids=["bare", "pipeline", "nested"])
def test_inner_fit_receives_exactly_its_folds_patients(table, wrap):
    X, y, groups = table
    GroupsRecorder.fits = []
    result = cross_validate_by_patient(wrap(GroupsRecorder()), X, y, groups, cv=5, verbose=0)
    assert len(GroupsRecorder.fits) == 5
    for fold, received in enumerate(GroupsRecorder.fits):
        test = result.predictions["fold"].to_numpy() == fold
        assert received == list(groups[~test])
        assert set(received).isdisjoint(groups[test])


def test_metadata_routing_hands_groups_to_the_fit_that_requests_them(table):
    X, y, groups = table
    GroupsRecorder.fits = []
    with sklearn.config_context(enable_metadata_routing=True):
        model = Pipeline([("scale", StandardScaler()),
                          ("model", GroupsRecorder().set_fit_request(groups=True))])
        result = cross_validate_by_patient(model, X, y, groups, verbose=0)
    assert len(GroupsRecorder.fits) == 5
    for fold, received in enumerate(GroupsRecorder.fits):
        assert received == list(groups[result.predictions["fold"].to_numpy() != fold])


def test_estimator_without_groups_or_gates(table):
    X, y, groups = table
    result = cross_validate_by_patient(LogisticRegression(), X, y, groups, verbose=0)
    assert sorted(result.scores.index) == ["P1", "P2", "P3", "P4", "P5"]
    assert "gate_image" not in result.predictions.columns
    assert result.histories == [None] * 5
    for fold in range(5):
        test = (result.predictions["fold"] == fold).to_numpy()
        model = LogisticRegression().fit(X[~test], y[~test])
        np.testing.assert_allclose(result.predictions.loc[test, list(CLASS_NAMES)],
                                   model.predict_proba(X[test]))


@pytest.mark.parametrize("kwargs, error, match", [
    ({"verbose": -1}, ValueError, "verbose"),
    ({"verbose": "yes"}, TypeError, "verbose"),
    ({"cv": 1}, ValueError, "cv"),
])
def test_bad_parameters_are_named(table, kwargs, error, match):
    X, y, groups = table
    with pytest.raises(error, match=match):
        cross_validate_by_patient(LogisticRegression(), X, y, groups, **kwargs)
