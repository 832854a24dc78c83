"""The calibration set of a quantifier and the criterion that chooses its method.

:func:`out_of_fold_proba` gives every training tile a posterior from a model that did not
see it (grouped by tiles, slide or patient), :func:`fit_quantifier` fits a
:class:`~hiercls.evaluation.quantification.PrevalenceQuantifier` on them, and
:func:`quantification_scores` scores methods on bags drawn from them: leave-one-slide-out
bags and QuaPy's artificial prevalence protocol, with no tile of the patients to predict.
:func:`choose_setting` turns those scores, and where several models (settings) compete
their :func:`~hiercls.evaluation.quantification.patient_shift`, into one choice.
"""

import itertools

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import GroupKFold, StratifiedGroupKFold, StratifiedKFold

from ...data.labels import CLASS_NAMES, check_probabilities, encode_labels
from ...exceptions import SingularAdjustmentError
from ...validation import check_number
from .quantifier import (  # the package's own helpers: one check of a method, one class code
    _NEC,
    _VIA,
    CALIBRATION_GROUPINGS,
    DEFAULT_METHOD,
    METHODS,
    RECALIBRATIONS,
    PrevalenceQuantifier,
    _check_method,
    necrotic_fraction,
)


def _fold_splitter(by, n_splits, random_state):
    if by == "tiles":
        return StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
    if by == "slide":
        return StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
    return GroupKFold(n_splits=n_splits)


def out_of_fold_proba(estimator, X, y, *, groups=None, by="slide", n_splits=5,
                      random_state=0, verbose=0):
    """Posteriors of every training tile from a clone of ``estimator`` that did not see it.

    The calibration set of :class:`PrevalenceQuantifier`. Each fold's clone is fitted on
    the other folds (all hyper-parameters as in ``estimator``; frozen-backbone features
    come from the feature cache, so a fold costs a training of the heads only).

    Parameters
    ----------
    estimator : estimator with ``predict_proba``
        Unfitted or fitted; it is cloned, never changed.
    X, y
        The training tiles and labels.
    groups : array-like of shape (n_tiles,), default=None
        The slide (``by="slide"``) or patient (``by="patient"``) of each tile; unused with
        ``by="tiles"``.
    by : {"tiles", "slide", "patient"}, default="slide"
        How tiles are split into folds: stratified tiles, stratified groups of slides, or
        whole patients (leave-patients-out, which can leave a fold without a class).
    n_splits : int, default=5
        Folds (at most the number of groups for ``"slide"`` and ``"patient"``).
    random_state : int, default=0
        Seed of the fold assignment.
    verbose : int, default=0
        1 prints one line per fold.

    Returns
    -------
    ndarray of shape (n_tiles, 3)

    Raises
    ------
    ValueError
        If ``by`` is unknown, ``groups`` is missing where ``by`` needs it, or a fold's
        training tiles lack a class (the clone could not predict it).
    """
    if by not in CALIBRATION_GROUPINGS:
        raise ValueError(f"by must be one of {list(CALIBRATION_GROUPINGS)}; got {by!r}")
    n_splits = check_number(n_splits, "n_splits", integer=True, low=2)
    codes, _ = encode_labels(y)
    if by != "tiles":
        if groups is None:
            raise ValueError(f"by={by!r} needs groups (the {by} of each tile); got None")
        groups = np.asarray(groups)
        if groups.shape != codes.shape:
            raise ValueError(f"groups has {groups.size} entries but y has {codes.size}; "
                             "expected one group per tile")
        n_splits = min(n_splits, len(np.unique(groups)))
    splitter = _fold_splitter(by, n_splits, random_state)
    out = np.full((codes.size, len(CLASS_NAMES)), np.nan)
    y_values = np.asarray(y.to_numpy() if isinstance(y, pd.Series) else y)
    folds = list(splitter.split(np.zeros(codes.size), codes, groups))
    # Every fold is checked before any is fitted: a fold without a class fails at once.
    for k, (train, _) in enumerate(folds):
        missing = set(range(3)) - set(codes[train])
        if missing:
            raise ValueError(
                f"fold {k} of by={by!r} has no training tile of "
                f"{sorted(CLASS_NAMES[c] for c in missing)}; use by='slide' or 'tiles'")
    for k, (train, test) in enumerate(folds):
        model = clone(estimator)
        Xtr = X.iloc[train] if hasattr(X, "iloc") else X[train]
        Xte = X.iloc[test] if hasattr(X, "iloc") else X[test]
        model.fit(Xtr, y_values[train])
        out[test] = model.predict_proba(Xte)
        if verbose:
            print(f"out-of-fold ({by}) fold {k + 1}/{n_splits}: {test.size} tiles", flush=True)
    return out


def fit_quantifier(estimator, X, y, *, method=DEFAULT_METHOD, groups=None, by="slide",
                   n_splits=5, random_state=0, verbose=0):
    """A :class:`PrevalenceQuantifier` fitted on ``estimator``'s out-of-fold posteriors.

    :func:`out_of_fold_proba` then :meth:`PrevalenceQuantifier.fit`; pass the result as
    ``quantifier=`` to :func:`~hiercls.evaluation.necrosis.necrosis_report` with the
    estimator fitted on all of ``X``. With ``by="slide"`` the quantifier keeps the slides,
    and its bootstrap resamples whole slides of the calibration set.
    """
    proba = out_of_fold_proba(estimator, X, y, groups=groups, by=by, n_splits=n_splits,
                              random_state=random_state, verbose=verbose)
    # Slides are the unit the bootstrap resamples; three or four patients are too few.
    slides = groups if by == "slide" else None
    return PrevalenceQuantifier(method).fit(proba, y, groups=slides)


# --------------------------------------------------------------------------------------
# The criterion

#: The trivial quantifier's row in :func:`quantification_scores` (QuaPy's name, MLPE, the
#: maximum likelihood prevalence estimator): every bag gets the calibration set's class
#: mix. A setting whose methods cannot beat it quantifies nothing.
BASELINE = "mlpe"


class _TrainingMix:
    """MLPE: the class mix of the tiles it was fitted on, whatever the bag.

    Not QuaPy's ``MaximumLikelihoodPrevalenceEstimation``: that one takes its classes from
    the labels present, so a calibration set missing a class (as patient folds here do)
    would give a prevalence vector of the wrong length.
    """

    def fit(self, proba, y):
        self.prevalence_ = np.bincount(y, minlength=len(CLASS_NAMES)) / len(y)
        return self

    def necrotic_fraction(self, proba):
        return float(necrotic_fraction(self.prevalence_))


def quantification_scores(proba, y, bags, *, methods=METHODS, recalibrations=RECALIBRATIONS,
                          app_folds=5, app_size=100, app_prevalences=11, random_state=0):
    """Error of each method's necrotic fraction on held-out bags of calibration tiles.

    The criterion that chooses a method without the patients to be predicted, from the
    training patients' out-of-fold posteriors. Two protocols:

    - *leave one bag out* (``bag_mae``): each bag with tumor (a slide: real shifts, since
      the slides' fractions differ) is quantified by the method fitted on the *other*
      bags' tiles;
    - the *artificial prevalence protocol* (``app_mae``, QuaPy's
      :class:`quapy.protocol.APP`): the bags are split into ``app_folds`` groups; the method
      fitted on the other groups quantifies samples of ``app_size`` held-out tiles drawn at
      prevalences on a grid over the simplex (``app_prevalences`` points per class), so
      that every method meets necrotic fractions from 0 to 1, not just those of the data.

    Parameters
    ----------
    proba : array-like of shape (n_tiles, 3)
        Out-of-fold posteriors of the training tiles.
    y : array-like of shape (n_tiles,)
        Their labels.
    bags : array-like of shape (n_tiles,)
        The bag (slide) of each tile.
    methods : sequence of str, default=METHODS
    recalibrations : sequence of {None, "temperature"}, default=RECALIBRATIONS
        Each method is scored with each (``recalibrate`` of :class:`PrevalenceQuantifier`).
    app_folds : int, default=5
        Groups of bags for the APP (0 skips it). Groups whose held-out tiles lack a class
        are skipped (the protocol cannot sample it).
    app_size : int, default=100
        Tiles per APP sample.
    app_prevalences : int, default=11
        Grid points per class of the APP.
    random_state : int, default=0
        Seed of the APP samples.

    Returns
    -------
    DataFrame
        One row per method and recalibration (index ``method``, ``recalibrate``, the
        latter ``"none"`` or ``"temperature"``), and one for the trivial :data:`BASELINE`:
        ``bag_mae``, ``bag_max`` (the largest leave-one-bag-out error), ``n_bags``,
        ``app_mae``, ``app_samples``, ``n_failed`` (fits whose adjustment was singular;
        their bags are left out of the means) and ``score``, the mean of ``bag_mae`` and
        ``app_mae`` (of the one measured where the other is not), lower is better.
    """
    from quapy.data import LabelledCollection
    from quapy.protocol import APP

    p = check_probabilities(proba)
    codes, _ = encode_labels(y)
    bags = np.asarray(bags)
    if bags.shape != codes.shape:
        raise ValueError(f"bags has {bags.size} entries but y has {codes.size}; expected one "
                         "bag per tile")
    folds = []
    if app_folds:
        n = min(app_folds, len(np.unique(bags)))
        folds = [test for _, test in GroupKFold(n_splits=n).split(p, codes, bags)]
    rows = []
    for method in methods:
        _check_method(method)
    settings = [*itertools.product(methods, recalibrations), (BASELINE, None)]
    for method, recalibrate in settings:
        make = (_TrainingMix if method == BASELINE
                else lambda: PrevalenceQuantifier(method, recalibrate))
        errors, app_errors, failed = [], [], 0
        for bag in np.unique(bags):
            inside = bags == bag
            tumor = np.isin(codes[inside], (_NEC, _VIA))
            if not tumor.any():
                continue
            truth = np.mean(codes[inside][tumor] == _NEC)
            try:
                quantifier = make().fit(p[~inside], codes[~inside])
                errors.append(abs(quantifier.necrotic_fraction(p[inside]) - truth))
            except SingularAdjustmentError:
                failed += 1
        for test in folds:
            held = np.zeros(codes.size, bool)
            held[test] = True
            if len(np.unique(codes[held])) < len(CLASS_NAMES):
                continue
            try:
                quantifier = make().fit(p[~held], codes[~held])
            except SingularAdjustmentError:
                failed += 1
                continue
            protocol = APP(LabelledCollection(p[held], codes[held], classes=[0, 1, 2]),
                           sample_size=app_size, n_prevalences=app_prevalences, repeats=1,
                           random_state=random_state, return_type="sample_prev")
            for sample, prevalence in protocol():
                truth = necrotic_fraction(prevalence)
                if np.isnan(truth):
                    continue  # a sample without tumor has no necrotic fraction
                try:
                    app_errors.append(abs(quantifier.necrotic_fraction(sample) - truth))
                except SingularAdjustmentError:
                    failed += 1
        errors = np.asarray(errors, dtype=float)
        app_errors = np.asarray(app_errors, dtype=float)
        rows.append({"method": method, "recalibrate": recalibrate or "none",
                     "bag_mae": float(np.nanmean(errors)) if errors.size else np.nan,
                     "bag_max": float(np.nanmax(errors)) if errors.size else np.nan,
                     "n_bags": int(errors.size),
                     "app_mae": float(np.nanmean(app_errors)) if app_errors.size else np.nan,
                     "app_samples": int(app_errors.size), "n_failed": failed})
    table = pd.DataFrame(rows).set_index(["method", "recalibrate"])
    table["score"] = table[["bag_mae", "app_mae"]].mean(axis=1)
    return table


def choose_setting(scores, shift=None):
    """The criterion's choice of a setting (a model), a method and a recalibration.

    Parameters
    ----------
    scores : mapping of str to DataFrame
        Each setting's :func:`quantification_scores` (on its own calibration set), with
        their ``score`` column and the :data:`BASELINE` row.
    shift : mapping of str to float, optional
        The :func:`~hiercls.evaluation.quantification.patient_shift` on the training
        patients of the settings it may choose among. Without it, the lowest ``score`` of
        all settings wins. A setting left out of it is not chosen by shift: give none for
        settings that represent a tile with statistics of its bag (``standardize_by``),
        since those depend on the bag's class mix, the quantity being estimated, and a
        low shift there says nothing about a new patient.

    Returns
    -------
    setting, method, recalibrate : str
        ``recalibrate`` as in the tables (``"none"`` or ``"temperature"``).

    Notes
    -----
    With ``shift``, the settings it names whose best method beats their own baseline
    (they quantify their training patients' bags better than the training mix does)
    compete on ``shift``: the lowest wins, since its classes look most alike across patients, which
    is what every quantifier assumes of the patient to be predicted. Its method is then
    the one with the lowest ``score``. Leave-one-slide-out and the APP draw their bags
    from patients the calibration models were fitted on, so they measure the quantifier,
    not how a representation carries to a new patient; ``shift`` measures the latter.
    Where no setting it names beats its baseline, the lowest ``score`` of all wins.

    Examples
    --------
    >>> import pandas as pd
    >>> from hiercls.evaluation.quantification import choose_setting
    >>> def table(acc, mlpe):
    ...     index = pd.MultiIndex.from_tuples([("acc", "none"), ("mlpe", "none")],
    ...                                       names=["method", "recalibrate"])
    ...     return pd.DataFrame({"score": [acc, mlpe]}, index=index)
    >>> scores = {"image": table(0.02, 0.30), "radiomics": table(0.05, 0.30),
    ...           "flat": table(0.31, 0.30)}
    >>> choose_setting(scores)
    ('image', 'acc', 'none')
    >>> choose_setting(scores, shift={"image": 0.9, "radiomics": 0.75, "flat": 0.5})
    ('radiomics', 'acc', 'none')
    """
    if not scores:
        raise ValueError("scores is empty; expected one quantification_scores table per setting")
    best = {}
    for setting, table in scores.items():
        if "score" not in getattr(table, "columns", ()):
            raise ValueError(f"scores[{setting!r}] has no 'score' column; expected a "
                             "quantification_scores table")
        methods = table.drop(index=BASELINE, level="method", errors="ignore")["score"].dropna()
        if methods.empty:
            continue
        baseline = (table.xs(BASELINE, level="method")["score"].min()
                    if BASELINE in table.index.get_level_values("method") else np.nan)
        # No baseline measured: nothing to beat (a NaN would beat nothing).
        baseline = np.inf if np.isnan(baseline) else float(baseline)
        method, recalibrate = methods.idxmin()
        best[setting] = (float(methods.min()), baseline, method, recalibrate)
    if not best:
        raise ValueError("no setting in scores has a method with a score (every fit "
                         "failed); expected at least one finite score")
    if shift is not None:
        unknown = sorted(set(shift) - set(scores))
        if unknown:
            raise ValueError(f"shift names settings without scores: {unknown}; expected "
                             f"some of {sorted(scores)}")
        odd = {s: v for s, v in shift.items() if not np.isfinite(v)}
        if odd:
            raise ValueError(f"shift has non-finite values {odd}; expected a finite "
                             "patient_shift per setting (leave a setting out instead)")
        useful = [s for s, (score, baseline, *_) in best.items()
                  if s in shift and score < baseline]
        if useful:
            setting = min(useful, key=lambda s: (shift[s], best[s][0]))
            return (setting, *best[setting][2:])
    setting = min(best, key=lambda s: best[s][0])
    return (setting, *best[setting][2:])
