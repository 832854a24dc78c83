import numpy as np
import pytest
import sklearn
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression, SGDClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from hiercls.estimator.ensemble import SeedEnsemble, seed_parameters

X, Y = make_classification(n_samples=90, n_features=6, n_informative=4, n_classes=3,
                           random_state=0)


def _pipeline():
    return Pipeline([("scale", StandardScaler()),
                     ("classifier", SGDClassifier(loss="log_loss", max_iter=5, tol=None))])


class _Recorder(ClassifierMixin, BaseEstimator):
    """Remembers its seed and the fit parameters it was given."""

    def __init__(self, random_state=None):
        self.random_state = random_state

    def fit(self, X, y, groups=None):
        self.classes_ = np.unique(y)
        self.groups_ = groups
        self.seed_ = self.random_state
        return self

    def predict_proba(self, X):
        p = np.random.RandomState(self.seed_).dirichlet(np.ones(len(self.classes_)),
                                                        size=len(X))
        return p


def test_members_get_distinct_seeds_in_nested_parameters():
    ensemble = SeedEnsemble(_pipeline(), n_members=4, random_state=0).fit(X, Y)
    assert ensemble.seed_parameters_ == ["classifier__random_state"]
    seeds = [m.get_params()["classifier__random_state"] for m in ensemble.estimators_]
    assert seeds == ensemble.seeds_.tolist()
    assert len(set(seeds)) == 4
    # The members differ, since their seeds do.
    members = ensemble.predict_proba_members(X)
    assert members.shape == (4, len(X), 3)
    assert not np.allclose(members[0], members[1])
    # The template is left unfitted and unseeded.
    assert ensemble.estimator.get_params()["classifier__random_state"] is None


def test_predict_proba_is_the_members_mean_and_predict_its_argmax():
    y_names = np.array(["a", "b", "c"])[Y]
    ensemble = SeedEnsemble(_pipeline(), n_members=3, random_state=1).fit(X, y_names)
    members = ensemble.predict_proba_members(X)
    np.testing.assert_allclose(ensemble.predict_proba(X), members.mean(axis=0))
    np.testing.assert_allclose(ensemble.predict_proba(X).sum(axis=1), 1.0)
    assert ensemble.classes_.tolist() == ["a", "b", "c"]
    np.testing.assert_array_equal(ensemble.predict(X),
                                  ensemble.classes_[members.mean(axis=0).argmax(axis=1)])
    assert ensemble.n_features_in_ == X.shape[1]
    assert ensemble.score(X, y_names) > 0.5


def test_deterministic_under_random_state():
    a = SeedEnsemble(_pipeline(), n_members=3, random_state=7).fit(X, Y)
    b = SeedEnsemble(_pipeline(), n_members=3, random_state=7).fit(X, Y)
    c = SeedEnsemble(_pipeline(), n_members=3, random_state=8).fit(X, Y)
    np.testing.assert_array_equal(a.seeds_, b.seeds_)
    np.testing.assert_array_equal(a.predict_proba_members(X), b.predict_proba_members(X))
    assert a.seeds_.tolist() != c.seeds_.tolist()
    # In parallel, the same result.
    d = SeedEnsemble(_pipeline(), n_members=3, random_state=7, n_jobs=2).fit(X, Y)
    np.testing.assert_array_equal(a.predict_proba_members(X), d.predict_proba_members(X))


def test_fit_params_reach_every_member():
    groups = np.arange(len(X)) % 5
    ensemble = SeedEnsemble(Pipeline([("classifier", _Recorder())]), n_members=3,
                            random_state=0).fit(X, Y, classifier__groups=groups)
    for member in ensemble.estimators_:
        np.testing.assert_array_equal(member[-1].groups_, groups)


def test_metadata_routing():
    weights = np.where(Y == 0, 5.0, 1.0)
    with sklearn.config_context(enable_metadata_routing=True):
        plain = LogisticRegression(solver="saga", max_iter=200).set_fit_request(sample_weight=True)
        ensemble = SeedEnsemble(plain, n_members=2, random_state=0).fit(X, Y, sample_weight=weights)
        reference = clone(plain).set_params(random_state=int(ensemble.seeds_[0]))
        reference.fit(X, Y, sample_weight=weights)
        np.testing.assert_allclose(ensemble.estimators_[0].coef_, reference.coef_)
        # Unrequested metadata is an error, not silently dropped.
        with pytest.raises(Exception, match="sample_weight"):
            SeedEnsemble(LogisticRegression(), n_members=2).fit(X, Y, sample_weight=weights)


def test_clone_and_params():
    ensemble = SeedEnsemble(_pipeline(), n_members=2, random_state=0)
    copy = clone(ensemble)
    assert copy.get_params()["n_members"] == 2
    assert copy.set_params(**copy.get_params()).get_params()["estimator__classifier__max_iter"] == 5
    assert seed_parameters(LogisticRegression()) == ["random_state"]


def test_verbose_prints_progress(capsys):
    SeedEnsemble(_pipeline(), n_members=2, random_state=0, verbose=1).fit(X, Y)
    assert capsys.readouterr().out.count("member") == 2
    SeedEnsemble(_pipeline(), n_members=2, random_state=0).fit(X, Y)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("kwargs, error, message", [
    ({"n_members": 0}, ValueError, "n_members"),
    ({"n_members": 2.5}, TypeError, "n_members"),
    ({"estimator": StandardScaler()}, TypeError, "predict_proba"),
])
def test_invalid_parameters_are_named(kwargs, error, message):
    arguments = {"estimator": _pipeline()} | kwargs
    with pytest.raises(error, match=message):
        SeedEnsemble(**arguments).fit(X, Y)


def test_estimator_without_seed_is_refused():
    from sklearn.neighbors import KNeighborsClassifier
    with pytest.raises(ValueError, match="no random_state parameter"):
        SeedEnsemble(KNeighborsClassifier()).fit(X, Y)
