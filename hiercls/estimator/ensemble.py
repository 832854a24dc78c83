"""The same estimator fitted with several seeds, and the spread of their probabilities.

Two fits of a network that differ only in their seed (initialization, batch order,
augmentation) give different probabilities on a patient they have not seen. The mean of
several such members is a better estimate than any one of them, and their spread is a
measure of the model's own uncertainty that a bootstrap over tiles cannot see:
:func:`hiercls.evaluation.necrosis.necrosis_from_probabilities` takes it through
``member_proba=``.
"""

import numbers

import numpy as np
from sklearn import get_config
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone
from sklearn.utils import check_random_state, check_scalar
from sklearn.utils.metadata_routing import MetadataRouter, MethodMapping, process_routing
from sklearn.utils.parallel import Parallel, delayed
from sklearn.utils.random import sample_without_replacement
from sklearn.utils.validation import check_is_fitted

__all__ = ["SeedEnsemble", "seed_parameters"]

# Seeds are drawn from [0, 2**31 - 1): every library accepts them as a random_state.
_MAX_SEED = np.iinfo(np.int32).max


def seed_parameters(estimator):
    """The names of the ``random_state`` parameters of ``estimator``, nested ones included.

    Parameters
    ----------
    estimator : estimator
        Anything with ``get_params``, e.g. a pipeline.

    Returns
    -------
    list of str
        Sorted names such as ``["classifier__random_state"]``.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> seed_parameters(make_pipeline(StandardScaler(), LogisticRegression()))
    ['logisticregression__random_state']
    """
    return sorted(name for name in estimator.get_params(deep=True)
                  if name == "random_state" or name.endswith("__random_state"))


def _fit_member(estimator, seed, names, X, y, fit_params, index, n_members, verbose):
    member = clone(estimator).set_params(**{name: int(seed) for name in names})
    member.fit(X, y, **fit_params)
    if verbose:
        print(f"[SeedEnsemble] member {index + 1}/{n_members} fitted (seed {int(seed)})",
              flush=True)
    return member


class SeedEnsemble(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """Average of one classifier fitted several times, each time with another seed.

    Every parameter of ``estimator`` named ``random_state`` (a pipeline's
    ``classifier__random_state`` among them) is set, in each member, to a seed of its own;
    the members are otherwise identical clones fitted on the same data.

    Parameters
    ----------
    estimator : classifier with ``predict_proba``
        The estimator to fit; it must have at least one ``random_state`` parameter (else
        all members would be the same model).
    n_members : int, default=5
        How many members to fit.
    random_state : int, RandomState instance or None, default=None
        Draws the members' distinct seeds; an int makes the ensemble reproducible.
    n_jobs : int or None, default=None
        Members fitted in parallel (joblib); None is 1 unless in a ``joblib.parallel_backend``
        context, -1 uses all processors.
    verbose : int, default=0
        0 is silent; above 0 a line per fitted member.

    Attributes
    ----------
    estimators_ : list of estimators
        The fitted members, in the order of ``seeds_``.
    seeds_ : ndarray of shape (n_members,)
        The seed of each member.
    seed_parameters_ : list of str
        The parameters the seeds were given to.
    classes_ : ndarray of shape (n_classes,)
        The classes, as the members know them.
    n_features_in_ : int
        Number of features seen in ``fit`` (when the members record it).
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Feature names seen in ``fit`` (when the members record them).

    See Also
    --------
    hiercls.evaluation.necrosis.necrosis_from_probabilities : takes
        :meth:`predict_proba_members` as ``member_proba`` to widen its interval.

    Notes
    -----
    The seeds' spread captures only the randomness of training. A systematic error, such as
    a shift of stain between the training patients and a new one, moves all members
    alike; measure it on held-out patients
    (:func:`hiercls.evaluation.necrosis.necrosis_error_margin`).

    With metadata routing enabled (``sklearn.set_config(enable_metadata_routing=True)``) the
    fit parameters are routed to ``estimator.fit`` as it requests them; otherwise every fit
    parameter is passed to every member's ``fit``.

    Examples
    --------
    >>> from sklearn.datasets import make_classification
    >>> from sklearn.linear_model import LogisticRegression
    >>> from hiercls.estimator.ensemble import SeedEnsemble
    >>> X, y = make_classification(n_samples=60, n_classes=3, n_informative=4, random_state=0)
    >>> ensemble = SeedEnsemble(LogisticRegression(solver="saga", max_iter=50, tol=1e-1),
    ...                         n_members=3, random_state=0).fit(X, y)
    >>> ensemble.predict_proba_members(X[:4]).shape
    (3, 4, 3)
    >>> ensemble.predict_proba(X[:4]).shape
    (4, 3)
    >>> len(set(ensemble.seeds_))
    3
    """

    def __init__(self, estimator, *, n_members=5, random_state=None, n_jobs=None, verbose=0):
        self.estimator = estimator
        self.n_members = n_members
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.verbose = verbose

    def fit(self, X, y, **fit_params):
        """Fit ``n_members`` clones of ``estimator``, each with its own seed.

        Parameters
        ----------
        X : array-like or DataFrame
            Training data, as ``estimator`` takes it.
        y : array-like of shape (n_samples,)
            Labels.
        **fit_params : dict
            Passed to every member's ``fit`` (e.g. ``classifier__groups`` of a pipeline);
            routed instead when metadata routing is enabled.

        Returns
        -------
        self : SeedEnsemble
        """
        n_members = check_scalar(self.n_members, "n_members", numbers.Integral, min_val=1)
        check_scalar(self.verbose, "verbose", numbers.Integral, min_val=0)
        if not hasattr(self.estimator, "predict_proba"):
            raise TypeError("estimator must have predict_proba; got "
                            f"{type(self.estimator).__name__}")
        names = seed_parameters(self.estimator)
        if not names:
            raise ValueError(
                f"estimator {type(self.estimator).__name__} has no random_state parameter; "
                "expected one (nested ones such as classifier__random_state count), else "
                "all members would be the same model")
        if get_config().get("enable_metadata_routing", False):
            member_params = process_routing(self, "fit", **fit_params).estimator.fit
        else:
            member_params = fit_params

        rng = check_random_state(self.random_state)
        seeds = sample_without_replacement(_MAX_SEED, n_members, random_state=rng)
        members = Parallel(n_jobs=self.n_jobs)(
            delayed(_fit_member)(self.estimator, seed, names, X, y, member_params, index,
                                 n_members, self.verbose)
            for index, seed in enumerate(seeds))

        classes = members[0].classes_
        for member in members[1:]:
            if not np.array_equal(member.classes_, classes):
                raise ValueError(
                    f"the members learned different classes ({list(classes)} and "
                    f"{list(member.classes_)}); expected the same classes from every seed")
        self.estimators_ = members
        self.seeds_ = np.asarray(seeds, dtype=np.int64)
        self.seed_parameters_ = names
        self.classes_ = classes
        for attribute in ("n_features_in_", "feature_names_in_"):
            if hasattr(members[0], attribute):
                setattr(self, attribute, getattr(members[0], attribute))
        return self

    def predict_proba_members(self, X):
        """Each member's class probabilities.

        Parameters
        ----------
        X : array-like or DataFrame

        Returns
        -------
        ndarray of shape (n_members, n_samples, n_classes)
        """
        check_is_fitted(self, "estimators_")
        return np.stack([np.asarray(member.predict_proba(X), dtype=float)
                         for member in self.estimators_])

    def predict_proba(self, X):
        """The members' mean class probabilities.

        Parameters
        ----------
        X : array-like or DataFrame

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
        """
        return self.predict_proba_members(X).mean(axis=0)

    def predict(self, X):
        """The class of largest mean probability.

        Parameters
        ----------
        X : array-like or DataFrame

        Returns
        -------
        ndarray of shape (n_samples,)
        """
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def get_metadata_routing(self):
        """How fit parameters reach the members when metadata routing is enabled.

        Returns
        -------
        MetadataRouter
        """
        return MetadataRouter(owner=self.__class__.__name__).add(
            estimator=self.estimator,
            method_mapping=MethodMapping().add(caller="fit", callee="fit"))
