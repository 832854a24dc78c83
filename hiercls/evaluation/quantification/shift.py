"""Whether a class looks the same across patients: the label-shift assumption, measured.

Every quantifier here assumes *label shift*: a class looks the same in the bag to be
quantified as in the calibration set (``P(x | y)`` fixed), only the class mix changes.
Between patients that fails wherever the representation carries a patient's look (its
stain, its scanner, its tumour's subtype) beside its class, and then no adjustment of
the class mix can repair the estimate. :func:`within_class_separability` measures that
on labelled tiles of several patients, the unseen patient not needed: for each class and
each pair of patients with enough tiles of it, the cross-validated ROC AUC of a linear
probe that tells the two patients apart from the representation alone (0.5: they cannot
be told apart; 1: every tile gives its patient away). :func:`patient_shift` does it on a
fitted model's fused embedding, the representation its heads read.
:func:`rate_shift` checks the assumption where it matters, on a labelled bag (a validation
patient): how far the classifier's behaviour on each class of the bag departs from the
rates a fitted quantifier learnt on its calibration set.
"""

import itertools
import math

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from ...data.labels import CLASS_NAMES, check_probabilities, encode_labels
from ...validation import check_number
from ..calibration import apply_temperature
from .quantifier import class_rates


def within_class_separability(features, y, groups, *, min_tiles=20, n_components=10,
                              n_splits=5, random_state=0):
    """Cross-validated AUC of telling two groups apart within each class.

    Parameters
    ----------
    features : array-like of shape (n_tiles, n_features)
        The representation (e.g. :meth:`~hiercls.HierarchicalFusionClassifier.embed`).
    y : array-like of shape (n_tiles,)
        The tiles' classes.
    groups : array-like of shape (n_tiles,)
        Their patients (or slides).
    min_tiles : int, default=20
        A group takes part in a class's pairs only with at least this many tiles of it
        (fewer give an AUC of noise).
    n_components : int, default=10
        The probe (standardization, PCA to this many components, logistic regression)
        sees the representation's main axes only, so that representations of different
        widths are probed alike.
    n_splits : int, default=5
        Stratified folds of the probe's out-of-fold predictions.
    random_state : int, default=0
        Seed of the folds and the PCA.

    Returns
    -------
    DataFrame
        One row per class and pair of groups: ``class``, ``group_a``, ``group_b``,
        ``n_a``, ``n_b`` and ``auc``.

    Raises
    ------
    ValueError
        If the lengths differ, ``groups`` is not 1-D or misses entries, the features
        are not finite, ``min_tiles < n_splits``, or no class has ``min_tiles`` tiles in
        two groups.

    Examples
    --------
    >>> import numpy as np
    >>> from hiercls.evaluation.quantification import within_class_separability
    >>> rng = np.random.default_rng(0)
    >>> y = np.tile([0, 1], 100)
    >>> groups = np.repeat(["a", "b"], 100)
    >>> same = rng.normal(size=(200, 5)) + y[:, None]          # the class, not the patient
    >>> table = within_class_separability(same, y, groups)
    >>> bool(table["auc"].max() < 0.7)
    True
    >>> shifted = same + (groups == "b")[:, None] * 2.0        # each patient its own look
    >>> bool(within_class_separability(shifted, y, groups)["auc"].min() > 0.9)
    True
    """
    values = np.asarray(features, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] == 0:
        raise ValueError("features must be 2-D (n_tiles, n_features) with one feature or "
                         f"more; got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError("features contain NaN or infinite values; expected finite numbers")
    codes, _ = encode_labels(y)
    groups = np.asarray(groups)
    if groups.ndim != 1:
        raise ValueError(f"groups must be 1-D, one group (patient) per tile; got shape "
                         f"{groups.shape}")
    missing = int(pd.isna(groups).sum())
    if missing:
        raise ValueError(f"groups has {missing} missing entries; expected the group "
                         "(patient) of every tile")
    if not (codes.size == groups.size == len(values)):
        raise ValueError(f"features has {len(values)} rows, y {codes.size} labels and groups "
                         f"{groups.size} entries; expected one of each per tile")
    n_splits = check_number(n_splits, "n_splits", integer=True, low=2)
    min_tiles = check_number(min_tiles, "min_tiles", integer=True, low=1)
    if min_tiles < n_splits:
        raise ValueError(f"min_tiles={min_tiles} is below n_splits={n_splits}; expected "
                         "min_tiles >= n_splits, so that every fold holds tiles of both groups")
    n_components = check_number(n_components, "n_components", integer=True, low=1)
    rows = []
    for code in np.unique(codes):
        in_class = codes == code
        members, counts = np.unique(groups[in_class], return_counts=True)
        eligible = members[counts >= min_tiles]
        for a, b in itertools.combinations(eligible, 2):
            pair = in_class & np.isin(groups, (a, b))
            target = (groups[pair] == b).astype(int)
            # The PCA fits on each fold's training part: no wider than its smallest one.
            n_b = int(target.sum())
            n_a = target.size - n_b
            smallest = n_a + n_b - math.ceil(n_a / n_splits) - math.ceil(n_b / n_splits)
            width = max(1, min(n_components, values.shape[1], smallest - 1))
            rows.append({"class": CLASS_NAMES[code], "group_a": a, "group_b": b,
                         "n_a": n_a, "n_b": n_b,
                         "auc": _probe_auc(values[pair], target, width, n_splits, random_state)})
    if not rows:
        raise ValueError(f"no class has at least min_tiles={min_tiles} tiles in two groups; "
                         "expected tiles of one class from two patients or more")
    return pd.DataFrame(rows)


def _probe_auc(values, target, width, n_splits, random_state):
    """Out-of-fold ROC AUC of the linear probe telling ``target`` 0 from 1."""
    if np.ptp(values, axis=0).max() == 0:
        return 0.5  # one point for every tile: nothing tells the groups apart
    probe = make_pipeline(StandardScaler(), PCA(width, random_state=random_state),
                          LogisticRegression(max_iter=2000))
    folds = StratifiedKFold(n_splits, shuffle=True, random_state=random_state)
    # A fold in which some axes do not vary gives PCA zero variances to divide by.
    with np.errstate(divide="ignore", invalid="ignore"):
        scores = cross_val_predict(probe, values, target, cv=folds, method="predict_proba")
    return float(roc_auc_score(target, scores[:, 1]))


def patient_shift(estimator, X, y, groups, **options):
    """Mean within-class separability of the patients in a fitted model's fused embedding.

    How far the representation that a model's heads read tells the patients of its
    training tiles apart beyond their classes; lower is closer to the label-shift
    assumption that the quantifiers make. Measured on labelled tiles only, for instance
    the training patients', so it can choose among models (the feature levers of
    ``benchmarks/necrosis.py``) without the patient to be predicted.

    Parameters
    ----------
    estimator : fitted HierarchicalFusionClassifier, or a Pipeline ending in one
        A pipeline's steps before the classifier transform ``X`` first.
    X : DataFrame
        The tiles, as the estimator takes them.
    y, groups : array-like of shape (n_tiles,)
        Their classes and patients.
    **options
        Passed to :func:`within_class_separability`.

    Returns
    -------
    float
        The mean AUC over classes and pairs of patients.

    Raises
    ------
    TypeError
        If ``estimator`` has no ``embed`` (not a fitted HierarchicalFusionClassifier or a
        Pipeline ending in one).
    ValueError
        As :func:`within_class_separability` raises it.

    Examples
    --------
    >>> import numpy as np
    >>> from hiercls import HierarchicalFusionClassifier
    >>> from hiercls.data.synthetic import make_synthetic_tiles
    >>> from hiercls.evaluation.quantification import patient_shift
    >>> X, y, groups = make_synthetic_tiles(48, size=32, random_state=0)
    >>> rng = np.random.default_rng(0)
    >>> X = X.assign(firstorder_Mean=y + rng.normal(size=len(y)))  # a radiomic column
    >>> clf = HierarchicalFusionClassifier(use_image=False, embed_dim=8, max_epochs=2,
    ...                                    verbose=0, random_state=0).fit(X, y)
    >>> shift = patient_shift(clf, X, y, groups, min_tiles=4, n_splits=2)
    >>> 0.0 <= shift <= 1.0
    True
    """
    if isinstance(estimator, Pipeline):
        X = estimator[:-1].transform(X)
        estimator = estimator[-1]
    if not hasattr(estimator, "embed"):
        raise TypeError(f"estimator must be a HierarchicalFusionClassifier (or a Pipeline "
                        f"ending in one), with embed(); got {type(estimator).__name__}")
    table = within_class_separability(estimator.embed(X), y, groups, **options)
    return float(table["auc"].mean())


def rate_shift(quantifier, proba, y):
    """How far a labelled bag's classes depart from a fitted quantifier's calibration rates.

    Under label shift a class looks the same in the bag as in the calibration set, so the
    classifier's mean posteriors over the tiles of each class, ``quantifier.rates_``, are
    the same in both: a necessary check of the assumption every adjustment rests on (and
    the very matrix PACC inverts). On a bag whose labels are known (a validation patient)
    this compares them entry by entry. A large ``difference`` on the tumor classes says
    the patient's tiles of that class look unlike the training patients' ones: an
    adjustment of the class mix then corrects for errors the classifier does not make on
    this patient, and misses those it does.

    Parameters
    ----------
    quantifier : fitted PrevalenceQuantifier
        Its calibration rates, and its temperature, which rescales the bag's posteriors
        as it rescaled the calibration set's.
    proba : array-like of shape (n_tiles, 3)
        The bag's posteriors, from the classifier the quantifier was calibrated for.
    y : array-like of shape (n_tiles,)
        The bag's labels.

    Returns
    -------
    DataFrame
        Nine rows, one per true class and class of the posterior: ``true_class``,
        ``posterior_class``, ``calibration`` (``rates_[posterior_class, true_class]``;
        NaN where the calibration set has no tile of ``true_class``, as ``"pcc"`` and
        ``"cc"`` allow), ``bag`` (the mean posterior of ``posterior_class`` over the bag's
        tiles of ``true_class``; NaN where the bag has none), ``difference``
        (``bag - calibration``) and ``n_tiles`` (the bag's tiles of ``true_class``).

    Raises
    ------
    NotFittedError
        If ``quantifier`` is not fitted.
    ValueError
        If ``y`` and ``proba`` differ in length, ``proba`` is not (n_tiles, 3)
        probabilities summing to 1, or ``y`` holds an unknown class.

    Examples
    --------
    >>> import numpy as np
    >>> from hiercls.evaluation.quantification import PrevalenceQuantifier, rate_shift
    >>> def posteriors(labels, right):  # a classifier right with probability `right`
    ...     p = np.full((labels.size, 3), (1 - right) / 2)
    ...     p[np.arange(labels.size), labels] = right
    ...     return p
    >>> calibration = np.repeat([0, 1, 2], 100)
    >>> quantifier = PrevalenceQuantifier("pacc").fit(posteriors(calibration, 0.8), calibration)
    >>> bag = np.repeat([0, 2], 50)            # a patient whose viable tiles look unusual
    >>> table = rate_shift(quantifier, posteriors(bag, 0.5), bag)
    >>> table.query("true_class == 'Viable-Tumor'")[["posterior_class", "calibration", "bag"]]
          posterior_class  calibration   bag
    6           Non-Tumor          0.1  0.25
    7    Non-Viable-Tumor          0.1  0.25
    8        Viable-Tumor          0.8  0.50
    >>> int(table.query("true_class == 'Non-Viable-Tumor'")["n_tiles"].iloc[0])
    0
    """
    check_is_fitted(quantifier, "quantifier_")
    p = check_probabilities(proba)
    if quantifier.temperature_ != 1.0:  # the bag on the scale the rates were learnt on
        p = apply_temperature(p, quantifier.temperature_)
    codes, _ = encode_labels(y)
    if codes.size != p.shape[0]:
        raise ValueError(f"y has {codes.size} labels but proba has {p.shape[0]} rows; "
                         "expected one label per row")
    bag = class_rates(p, codes)
    # rates_ holds zeros for a class without calibration tiles: no rate, rather.
    calibration = np.where(quantifier.training_prevalence_ > 0, quantifier.rates_, np.nan)
    n_tiles = np.bincount(codes, minlength=len(CLASS_NAMES))
    return pd.DataFrame([
        {"true_class": CLASS_NAMES[true], "posterior_class": CLASS_NAMES[posterior],
         "calibration": float(calibration[posterior, true]), "bag": float(bag[posterior, true]),
         "difference": float(bag[posterior, true] - calibration[posterior, true]),
         "n_tiles": int(n_tiles[true])}
        for true in range(len(CLASS_NAMES)) for posterior in range(len(CLASS_NAMES))])
