"""Percentage of necrosis per patient: the figure a pathologist reports after chemotherapy.

After neoadjuvant chemotherapy of osteosarcoma the pathologist estimates which fraction
of the tumor is necrotic (non-viable); a necrotic fraction of at least 90 % is a *good*
response, anything less a *poor* one. From tiles, the necrotic fraction of a patient is

    necrotic fraction = (necrotic tumor tiles) / (all tumor tiles),

with Non-Tumor tiles left out of both. This module estimates it from a classifier's
probabilities, with a bootstrap confidence interval over the patient's tiles, and
computes the same fraction from the pathologists' tile labels for comparison.

From probabilities the counts are *expected* counts: with ``P1`` and ``P2`` the
probabilities of Non-Viable-Tumor and Viable-Tumor,

    necrotic fraction = sum_i P1_i / sum_i (P1_i + P2_i),    viable fraction = 1 - that.

This uses the classifier's uncertainty instead of discarding it (an argmax count, also
given for comparison, turns a 0.51 into a whole tile).

A patient whose (expected) tumor tile count is below ``min_tumor_tiles`` (default 1) has
no fraction to speak of: its fractions and interval are NaN and its response is
``"no tumor"``. No division by (almost) zero takes place, so there is no warning either.
"""

import numbers

import numpy as np
import pandas as pd
from sklearn.utils import check_random_state

from ..data.labels import CLASS_NAMES, encode_labels

__all__ = [
    "GOOD_RESPONSE",
    "MIN_TUMOR_TILES",
    "NO_TUMOR",
    "necrosis_from_evaluation",
    "necrosis_from_probabilities",
    "necrosis_report",
    "reference_necrosis",
]

#: Least necrotic fraction of the tumor that counts as a good response to chemotherapy.
GOOD_RESPONSE = 0.90

#: Least (expected) number of tumor tiles a group needs for its fractions to be estimated.
MIN_TUMOR_TILES = 1.0

#: The response of a group with too few tumor tiles.
NO_TUMOR = "no tumor"

# Bootstrap replicates are drawn in chunks of at most this many resampled tiles, so memory
# stays bounded for whole-slide sized groups.
_BOOTSTRAP_CHUNK = 2_000_000

_NEC, _VIA = 1, 2  # column codes of Non-Viable-Tumor (necrosis) and Viable-Tumor


# --------------------------------------------------------------------------------------
# Input checks

def _check_number(value, name, *, low, high, low_open=False, high_open=False):
    if (not isinstance(value, numbers.Real) or isinstance(value, bool)
            or not np.isfinite(value) or value < low or value > high
            or (low_open and value == low) or (high_open and value == high)):
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        raise ValueError(f"{name} must be a number in {left}{low:g}, {high:g}{right}; got {value!r}")
    return float(value)


def _check_n_bootstrap(value):
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 0:
        raise ValueError(f"n_bootstrap must be an int >= 0 (0: no interval); got {value!r}")
    return int(value)


def _check_proba(proba):
    """Probabilities as a float array (n, 3); a DataFrame may carry the class-name columns
    among others (like :attr:`EvaluationResult.predictions`)."""
    if isinstance(proba, pd.DataFrame):
        if all(name in proba.columns for name in CLASS_NAMES):
            proba = proba[list(CLASS_NAMES)]
        proba = proba.to_numpy()
    try:
        p = np.asarray(proba, dtype=float)
    except (TypeError, ValueError):
        raise ValueError("proba must be numeric probabilities of shape (n_samples, 3)") from None
    if p.ndim != 2 or p.shape[1] != len(CLASS_NAMES) or p.shape[0] == 0:
        raise ValueError(
            f"proba must have shape (n_samples, {len(CLASS_NAMES)}) with columns "
            f"{list(CLASS_NAMES)} in this order and at least one row; got shape {p.shape}"
        )
    if not np.all(np.isfinite(p)):
        raise ValueError("proba contains NaN or infinite values; expected probabilities")
    if p.min() < 0.0 or p.max() > 1.0 + 1e-6:
        raise ValueError(
            f"proba must hold probabilities in [0, 1]; got values in [{p.min():g}, {p.max():g}]"
        )
    return p


def _check_groups(groups, n_samples):
    """Integer codes of the groups, their sorted values and the index name to use."""
    name = groups.name if isinstance(groups, pd.Series) and isinstance(groups.name, str) else "group"
    values = groups.to_numpy() if isinstance(groups, (pd.Series, pd.Index)) else np.asarray(groups)
    if values.ndim != 1:
        raise ValueError(f"groups must be one-dimensional; got shape {values.shape}")
    if values.shape[0] != n_samples:
        raise ValueError(
            f"groups has {values.shape[0]} entries but there are {n_samples} tiles; expected "
            "one group (patient) per tile"
        )
    codes, uniques = pd.factorize(values, sort=True)
    if (codes < 0).any():
        raise ValueError("groups contains missing values; expected a patient for every tile")
    return codes, pd.Index(uniques, name=name)


def _response(necrotic_fraction, threshold):
    return np.where(np.isnan(necrotic_fraction), NO_TUMOR,
                    np.where(necrotic_fraction >= threshold, "good", "poor")).astype(object)


def _ratio(numerator, denominator, minimum):
    """numerator / denominator, NaN where the denominator is below ``minimum``."""
    numerator = np.asarray(numerator, dtype=float)
    denominator = np.asarray(denominator, dtype=float)
    out = np.full(np.broadcast(numerator, denominator).shape, np.nan)
    ok = denominator >= minimum
    np.divide(numerator, denominator, out=out, where=ok)
    return out


# --------------------------------------------------------------------------------------
# Bootstrap

def _bootstrap_fractions(necrotic, tumor, n_bootstrap, rng):
    """Necrotic fraction of ``n_bootstrap`` resamples (with replacement) of the tiles.

    A resample with no tumor mass at all has no fraction (NaN).
    """
    n = necrotic.size
    replicates = np.empty(n_bootstrap)
    per_chunk = max(1, _BOOTSTRAP_CHUNK // n)
    for start in range(0, n_bootstrap, per_chunk):
        stop = min(start + per_chunk, n_bootstrap)
        draw = rng.randint(0, n, size=(stop - start, n))
        replicates[start:stop] = _ratio(necrotic[draw].sum(axis=1), tumor[draw].sum(axis=1),
                                        np.finfo(float).tiny)
    return replicates


# --------------------------------------------------------------------------------------
# Public functions

def necrosis_from_probabilities(proba, groups, *, n_bootstrap=1000, confidence=0.95,
                                threshold=GOOD_RESPONSE, min_tumor_tiles=MIN_TUMOR_TILES,
                                random_state=0):
    """Estimate each group's necrotic and viable fraction of the tumor from probabilities.

    Parameters
    ----------
    proba : array-like or DataFrame of shape (n_tiles, 3)
        Class probabilities in code order (Non-Tumor, Non-Viable-Tumor, Viable-Tumor), as
        ``predict_proba`` returns them. A DataFrame holding the three class-name columns
        (such as :attr:`EvaluationResult.predictions <hiercls.evaluation.cross_validation.EvaluationResult>`)
        is read by those columns; other columns are ignored.
    groups : array-like of shape (n_tiles,)
        The group (patient) of each tile.
    n_bootstrap : int, default=1000
        Bootstrap resamples of each group's tiles for the confidence interval; 0 skips the
        interval (NaN bounds).
    confidence : float, default=0.95
        Coverage of the percentile bootstrap interval, in (0, 1).
    threshold : float, default=0.90
        Least necrotic fraction that is a ``"good"`` response.
    min_tumor_tiles : float, default=1.0
        Least expected number of tumor tiles (sum of ``P1 + P2``) a group needs; below it
        the group's fractions are NaN and its response is ``"no tumor"``. The argmax
        fractions likewise need at least this many tiles predicted as tumor.
    random_state : int, RandomState instance or None, default=0
        Seed of the bootstrap resampling.

    Returns
    -------
    DataFrame
        One row per group, sorted; the index is named like ``groups`` when it is a named
        Series (e.g. ``"patient"``), else ``"group"``. Columns:

        - ``n_tiles``: tiles of the group;
        - ``expected_tumor_tiles``, ``expected_necrotic_tiles``: ``sum(P1 + P2)``, ``sum(P1)``;
        - ``necrotic_fraction``, ``necrotic_fraction_low``, ``necrotic_fraction_high``:
          the expected necrotic fraction of the tumor and its percentile bootstrap
          interval (tiles resampled with replacement within the group);
        - ``viable_fraction``, ``viable_fraction_low``, ``viable_fraction_high``:
          one minus the above;
        - ``argmax_tumor_tiles``, ``necrotic_fraction_argmax``, ``viable_fraction_argmax``:
          the same from counting each tile as its most probable class;
        - ``response``: ``"good"`` (necrotic fraction >= ``threshold``), ``"poor"`` or
          ``"no tumor"``.

    See Also
    --------
    reference_necrosis : the same fractions from the pathologists' labels.
    necrosis_report : from a fitted pipeline, with the reference and the error.

    Examples
    --------
    >>> from hiercls.evaluation.necrosis import necrosis_from_probabilities
    >>> proba = [[0.0, 0.9, 0.1], [0.0, 0.7, 0.3], [1.0, 0.0, 0.0]]
    >>> table = necrosis_from_probabilities(proba, ["A", "A", "A"], n_bootstrap=0)
    >>> row = table.loc["A"]
    >>> float(row["expected_tumor_tiles"]), round(float(row["necrotic_fraction"]), 3), row["response"]
    (2.0, 0.8, 'poor')
    """
    p = _check_proba(proba)
    codes, index = _check_groups(groups, p.shape[0])
    n_bootstrap = _check_n_bootstrap(n_bootstrap)
    confidence = _check_number(confidence, "confidence", low=0.0, high=1.0,
                               low_open=True, high_open=True)
    threshold = _check_number(threshold, "threshold", low=0.0, high=1.0)
    min_tumor_tiles = _check_number(min_tumor_tiles, "min_tumor_tiles", low=0.0,
                                    high=np.inf, low_open=True)
    rng = check_random_state(random_state)

    n_groups = len(index)
    necrotic = p[:, _NEC]
    tumor = p[:, _NEC] + p[:, _VIA]
    n_tiles = np.bincount(codes, minlength=n_groups)
    expected_tumor = np.bincount(codes, weights=tumor, minlength=n_groups)
    expected_necrotic = np.bincount(codes, weights=necrotic, minlength=n_groups)
    fraction = _ratio(expected_necrotic, expected_tumor, min_tumor_tiles)

    predicted = p.argmax(axis=1)
    argmax_tumor = np.bincount(codes, weights=predicted != 0, minlength=n_groups)
    argmax_necrotic = np.bincount(codes, weights=predicted == _NEC, minlength=n_groups)
    fraction_argmax = _ratio(argmax_necrotic, argmax_tumor, min_tumor_tiles)

    low = np.full(n_groups, np.nan)
    high = np.full(n_groups, np.nan)
    if n_bootstrap:
        tail = 100.0 * (1.0 - confidence) / 2.0
        for g in range(n_groups):
            if np.isnan(fraction[g]):
                continue  # no tumor: no interval either
            rows = codes == g
            replicates = _bootstrap_fractions(necrotic[rows], tumor[rows], n_bootstrap, rng)
            replicates = replicates[~np.isnan(replicates)]
            if replicates.size:
                low[g], high[g] = np.percentile(replicates, [tail, 100.0 - tail])

    return pd.DataFrame({
        "n_tiles": n_tiles,
        "expected_tumor_tiles": expected_tumor,
        "expected_necrotic_tiles": expected_necrotic,
        "necrotic_fraction": fraction,
        "necrotic_fraction_low": low,
        "necrotic_fraction_high": high,
        "viable_fraction": 1.0 - fraction,
        "viable_fraction_low": 1.0 - high,
        "viable_fraction_high": 1.0 - low,
        "argmax_tumor_tiles": argmax_tumor.astype(np.int64),
        "necrotic_fraction_argmax": fraction_argmax,
        "viable_fraction_argmax": 1.0 - fraction_argmax,
        "response": _response(fraction, threshold),
    }, index=index)


def reference_necrosis(y, groups, *, threshold=GOOD_RESPONSE):
    """Each group's necrotic and viable fraction of the tumor from the tile labels.

    Parameters
    ----------
    y : array-like of shape (n_tiles,)
        The pathologists' labels, as codes (0, 1, 2) or class names.
    groups : array-like of shape (n_tiles,)
        The group (patient) of each tile.
    threshold : float, default=0.90
        Least necrotic fraction that is a ``"good"`` response.

    Returns
    -------
    DataFrame
        One row per group, sorted, index named as in :func:`necrosis_from_probabilities`.
        Columns ``n_tiles``, ``tumor_tiles``, ``necrotic_tiles``, ``viable_tiles``,
        ``necrotic_fraction`` (necrotic / tumor tiles), ``viable_fraction`` and
        ``response``. A group without tumor tiles has NaN fractions and the response
        ``"no tumor"``.

    Examples
    --------
    >>> from hiercls.evaluation.necrosis import reference_necrosis
    >>> y = ["Non-Tumor", "Non-Viable-Tumor", "Non-Viable-Tumor", "Viable-Tumor", "Non-Tumor"]
    >>> reference_necrosis(y, ["A", "A", "A", "A", "B"])[["necrotic_fraction", "response"]]
           necrotic_fraction  response
    group                             
    A               0.666667      poor
    B                    NaN  no tumor
    """
    codes, _ = encode_labels(y)
    group_codes, index = _check_groups(groups, codes.size)
    threshold = _check_number(threshold, "threshold", low=0.0, high=1.0)
    n_groups = len(index)
    counts = np.zeros((n_groups, len(CLASS_NAMES)), dtype=np.int64)
    np.add.at(counts, (group_codes, codes), 1)
    tumor = counts[:, _NEC] + counts[:, _VIA]
    fraction = _ratio(counts[:, _NEC], tumor, 1)
    return pd.DataFrame({
        "n_tiles": counts.sum(axis=1),
        "tumor_tiles": tumor,
        "necrotic_tiles": counts[:, _NEC],
        "viable_tiles": counts[:, _VIA],
        "necrotic_fraction": fraction,
        "viable_fraction": 1.0 - fraction,
        "response": _response(fraction, threshold),
    }, index=index)


def _with_reference(estimate, reference):
    """The estimate with the reference columns (prefixed) and the absolute error."""
    columns = ["tumor_tiles", "necrotic_tiles", "viable_tiles", "necrotic_fraction",
               "viable_fraction", "response"]
    reference = reference[columns].add_prefix("reference_")
    table = estimate.join(reference)
    table["absolute_error"] = (table["necrotic_fraction"]
                               - table["reference_necrotic_fraction"]).abs()
    table["reference_in_interval"] = (
        (table["reference_necrotic_fraction"] >= table["necrotic_fraction_low"])
        & (table["reference_necrotic_fraction"] <= table["necrotic_fraction_high"])
    )
    return table


def _check_three_classes(estimator):
    classes = getattr(estimator, "classes_", None)
    if classes is None:
        return
    try:
        codes, _ = encode_labels(np.asarray(classes), name="the estimator's classes_")
    except ValueError as error:
        raise ValueError(f"estimator must be fitted on the classes {list(CLASS_NAMES)}: {error}") from None
    if codes.tolist() != [0, 1, 2]:
        raise ValueError(
            f"estimator must be fitted on all three classes {list(CLASS_NAMES)} (in this "
            f"order); its classes_ are {list(classes)}"
        )


def necrosis_report(fitted_pipeline, X, groups, *, y=None, n_bootstrap=1000, confidence=0.95,
                    threshold=GOOD_RESPONSE, min_tumor_tiles=MIN_TUMOR_TILES, random_state=0):
    """Per-patient necrosis estimated by a fitted classifier, optionally against the labels.

    Parameters
    ----------
    fitted_pipeline : fitted estimator with ``predict_proba``
        Usually a fitted :func:`hiercls.make_fusion_pipeline` or
        :class:`~hiercls.HierarchicalFusionClassifier`, fitted on all three classes.
    X : DataFrame
        The tiles, as the estimator takes them.
    groups : array-like of shape (n_tiles,) or str
        The patient of each tile, or the name of the column of ``X`` that holds it.
    y : array-like of shape (n_tiles,), default=None
        The pathologists' labels; when given, the reference fractions and the error are
        added.
    n_bootstrap, confidence, threshold, min_tumor_tiles, random_state
        As in :func:`necrosis_from_probabilities`.

    Returns
    -------
    DataFrame
        The columns of :func:`necrosis_from_probabilities`; with ``y`` also
        ``reference_tumor_tiles``, ``reference_necrotic_tiles``, ``reference_viable_tiles``,
        ``reference_necrotic_fraction``, ``reference_viable_fraction``,
        ``reference_response`` (those of :func:`reference_necrosis`), ``absolute_error``
        (``|necrotic_fraction - reference_necrotic_fraction|``, equal to the viable
        fraction's error) and ``reference_in_interval`` (the reference lies within the
        bootstrap interval; False where either is undefined).

    Notes
    -----
    Tiles the estimator was trained on give optimistic estimates; report on held-out
    patients (or use :func:`necrosis_from_evaluation` with out-of-fold probabilities).
    """
    if isinstance(groups, str):
        if not isinstance(X, pd.DataFrame) or groups not in X.columns:
            raise ValueError(f"groups={groups!r} names no column of X; expected a column name "
                             "of X or one group per tile")
        groups = X[groups]
    if not hasattr(fitted_pipeline, "predict_proba"):
        raise TypeError(f"fitted_pipeline must have predict_proba; got {type(fitted_pipeline).__name__}")
    _check_three_classes(fitted_pipeline)
    proba = fitted_pipeline.predict_proba(X)
    estimate = necrosis_from_probabilities(
        proba, groups, n_bootstrap=n_bootstrap, confidence=confidence, threshold=threshold,
        min_tumor_tiles=min_tumor_tiles, random_state=random_state)
    if y is None:
        return estimate
    return _with_reference(estimate, reference_necrosis(y, groups, threshold=threshold))


def necrosis_from_evaluation(result, *, n_bootstrap=1000, confidence=0.95,
                             threshold=GOOD_RESPONSE, min_tumor_tiles=MIN_TUMOR_TILES,
                             random_state=0):
    """Per-patient necrosis from the out-of-fold probabilities of a cross-validation.

    Parameters
    ----------
    result : EvaluationResult
        What :func:`hiercls.evaluation.cross_validation.cross_validate_by_patient` returned; its
        ``predictions`` give the probabilities, ``patient`` and ``y_true``.
    n_bootstrap, confidence, threshold, min_tumor_tiles, random_state
        As in :func:`necrosis_from_probabilities`.

    Returns
    -------
    DataFrame
        As :func:`necrosis_report` with ``y``, index named ``"patient"``: each patient's
        estimate comes from the model that did not see the patient.
    """
    predictions = getattr(result, "predictions", None)
    needed = [*CLASS_NAMES, "patient", "y_true"]
    if not isinstance(predictions, pd.DataFrame) or any(c not in predictions for c in needed):
        raise ValueError(f"result must be an EvaluationResult whose predictions have the "
                         f"columns {needed}")
    patients = predictions["patient"].rename("patient")
    estimate = necrosis_from_probabilities(
        predictions, patients, n_bootstrap=n_bootstrap, confidence=confidence,
        threshold=threshold, min_tumor_tiles=min_tumor_tiles, random_state=random_state)
    reference = reference_necrosis(predictions["y_true"], patients, threshold=threshold)
    return _with_reference(estimate, reference)
