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

Three options address the two ways the default estimate fails on new patients (see
``docs/evaluation.md``, "Necrosis: the estimate and its interval"):

- ``tumor_threshold=t`` keeps only tiles whose ``P1 + P2 >= t``. A Non-Tumor tile scored
  ``(0.8, 0.1, 0.1)`` otherwise adds 0.1 necrotic and 0.1 viable tile to the counts; on a
  patient with many Non-Tumor tiles these strays pull every fraction towards 0.5. The price:
  tumor tiles the model doubts (``P1 + P2 < t``) are left out as well, which biases the
  fraction if the model doubts one tumor class more than the other.
- ``member_proba=`` (each seed's probabilities, from
  :meth:`hiercls.estimator.ensemble.SeedEnsemble.predict_proba_members`): every bootstrap
  replicate also draws a member, so the interval holds the model's training randomness
  as well as the sampling of tiles.
- ``error_margin=m`` (from :func:`necrosis_error_margin` on held-out patients) widens the
  interval to ``[low - m, high + m]``, clipped to [0, 1]: the model's systematic error,
  which neither the tiles nor the seeds reveal.
"""

import math
import warnings

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from ..data.labels import CLASS_NAMES, check_probabilities, encode_labels
from ..exceptions import FewPatientsWarning, UncalibratedNecrosisWarning
from ..validation import check_number
from .quantification import (
    ADJUSTED_METHODS,
    DEFAULT_METHOD,
    METHODS,
    PrevalenceQuantifier,
    SingularAdjustmentError,
    necrotic_fraction,
)

__all__ = [
    "FRACTIONS",
    "FewPatientsWarning",
    "GOOD_RESPONSE",
    "MIN_TUMOR_TILES",
    "NO_TUMOR",
    "UncalibratedNecrosisWarning",
    "necrosis_from_evaluation",
    "necrosis_from_probabilities",
    "necrosis_error_margin",
    "necrosis_report",
    "reference_necrosis",
]

#: Least necrotic fraction of the tumor that counts as a good response to chemotherapy.
GOOD_RESPONSE = 0.90

#: Least (expected) number of tumor tiles a group needs for its fractions to be estimated.
MIN_TUMOR_TILES = 1.0

#: The response of a group with too few tumor tiles.
NO_TUMOR = "no tumor"

#: How tiles' probabilities become counts: expected counts, or each tile as its likeliest class.
FRACTIONS = ("expected", "argmax")



# Bootstrap replicates are drawn in chunks of at most this many resampled tiles, so memory
# stays bounded for whole-slide sized groups.
_BOOTSTRAP_CHUNK = 2_000_000

_NEC, _VIA = 1, 2  # column codes of Non-Viable-Tumor (necrosis) and Viable-Tumor


# --------------------------------------------------------------------------------------
# Input checks

def _check_real(value, name, *, min_val=None, max_val=None, include_boundaries="both"):
    """A finite real number within the bounds (bools and NaN refused): the package's
    :func:`~hiercls.validation.check_number`."""
    return float(check_number(value, name, low=min_val, high=max_val,
                              closed=include_boundaries))


def _check_n_bootstrap(value):
    return check_number(value, "n_bootstrap", integer=True, low=0,
                        expected="an int >= 0 (0: no interval)")


def _check_options(fraction, tumor_threshold, error_margin):
    if not isinstance(fraction, str) or fraction not in FRACTIONS:
        raise ValueError(f"fraction must be one of {list(FRACTIONS)}; got {fraction!r}")
    if tumor_threshold is not None:
        tumor_threshold = _check_real(tumor_threshold, "tumor_threshold", min_val=0.0,
                                      max_val=1.0)
    if error_margin is not None:
        error_margin = _check_real(error_margin, "error_margin", min_val=0.0, max_val=1.0)
    return tumor_threshold, error_margin


def _check_member_proba(member_proba, n_tiles):
    """Each member's probabilities as a float array (n_members, n_tiles, 3)."""
    try:
        m = np.asarray(member_proba, dtype=float)
    except (TypeError, ValueError):
        raise ValueError("member_proba must be numeric probabilities of shape "
                         "(n_members, n_tiles, 3)") from None
    if m.ndim != 3 or m.shape[0] == 0 or m.shape[1:] != (n_tiles, len(CLASS_NAMES)):
        raise ValueError(
            f"member_proba must have shape (n_members, {n_tiles}, {len(CLASS_NAMES)}): each "
            f"member's probabilities of the same tiles as proba; got shape {m.shape}")
    # Each member's rows obey the rules of any probabilities.
    check_probabilities(m.reshape(-1, m.shape[-1]), name="member_proba")
    return m


def _tile_counts(p, fraction, tumor_threshold):
    """Each tile's contribution to the necrotic and to the tumor count, from probabilities
    ``p`` of shape (..., 3)."""
    if fraction == "expected":
        necrotic, tumor = p[..., _NEC], p[..., _NEC] + p[..., _VIA]
    else:
        predicted = p.argmax(axis=-1)
        necrotic, tumor = predicted == _NEC, predicted != 0
    if tumor_threshold is not None:
        kept = p[..., _NEC] + p[..., _VIA] >= tumor_threshold
        necrotic, tumor = necrotic * kept, tumor * kept
    return np.asarray(necrotic, dtype=float), np.asarray(tumor, dtype=float)


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

    ``necrotic`` and ``tumor`` are each tile's counts, of shape (n_tiles,), or of shape
    (n_members, n_tiles) for an ensemble: then each replicate also draws one member, whose
    counts it sums. A resample with no tumor mass at all has no fraction (NaN).
    """
    members = necrotic.ndim == 2
    n = necrotic.shape[-1]
    replicates = np.empty(n_bootstrap)
    per_chunk = max(1, _BOOTSTRAP_CHUNK // n)
    for start in range(0, n_bootstrap, per_chunk):
        stop = min(start + per_chunk, n_bootstrap)
        draw = rng.randint(0, n, size=(stop - start, n))
        if members:
            member = rng.randint(0, necrotic.shape[0], size=(stop - start, 1))
            nec, tum = necrotic[member, draw], tumor[member, draw]
        else:
            nec, tum = necrotic[draw], tumor[draw]
        replicates[start:stop] = _ratio(nec.sum(axis=1), tum.sum(axis=1), np.finfo(float).tiny)
    return replicates


# --------------------------------------------------------------------------------------
# Public functions

def necrosis_from_probabilities(proba, groups, *, method="auto", quantifier=None,
                                n_bootstrap=1000, confidence=0.95,
                                threshold=GOOD_RESPONSE, min_tumor_tiles=MIN_TUMOR_TILES,
                                random_state=0, fraction="expected", tumor_threshold=None,
                                member_proba=None, error_margin=None):
    """Estimate each group's necrotic and viable fraction of the tumor from probabilities.

    Parameters
    ----------
    proba : array-like or DataFrame of shape (n_tiles, 3)
        Class probabilities in code order (Non-Tumor, Non-Viable-Tumor, Viable-Tumor), as
        ``predict_proba`` returns them. A DataFrame holding the three class-name columns
        (such as :attr:`EvaluationResult.predictions <hiercls.evaluation.cross_validation.EvaluationResult>`)
        is read by those columns; other columns are ignored.
    groups : array-like of shape (n_tiles,)
        The group (patient, slide) of each tile.
    method : {"auto", "cc", "pcc", "acc", "pacc", "emq", "dmy", "kdey"}, default="auto"
        How a group's tiles become its necrotic fraction (:mod:`~hiercls.evaluation.quantification`).
        ``"pcc"`` sums the probabilities and ``"cc"`` counts argmax votes (``fraction``
        ``"expected"`` and ``"argmax"``); both carry the training patients' class mix into
        every estimate. ``"acc"``, ``"pacc"``, ``"emq"``, ``"dmy"`` and ``"kdey"`` correct
        for it and need ``quantifier``. ``"auto"`` is
        :data:`~hiercls.evaluation.quantification.DEFAULT_METHOD` (the method
        ``benchmarks/necrosis.py`` chose without the test patients) when ``quantifier`` is
        given, else the count that ``fraction`` names; the ``method`` column says which.
    quantifier : PrevalenceQuantifier or tuple (calibration_proba, calibration_y), default=None
        The calibration set the adjusted methods learn from: a fitted
        :class:`~hiercls.evaluation.quantification.PrevalenceQuantifier` (its ``method`` is
        used when ``method="auto"``) or held-out posteriors with their labels (e.g.
        :func:`~hiercls.evaluation.quantification.out_of_fold_proba` of the training tiles).
    n_bootstrap : int, default=1000
        Bootstrap resamples of each group's tiles for the confidence interval; 0 skips the
        interval (NaN bounds). With an adjusted method each replicate also resamples the
        calibration set and refits the adjustment.
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
    fraction : {"expected", "argmax"}, default="expected"
        What ``necrotic_fraction`` (its interval and the response) counts: ``"expected"``
        sums the probabilities (``sum P1 / sum (P1 + P2)``); ``"argmax"`` counts each tile
        as its most probable class (the ``*_argmax`` columns). The argmax count ignores a
        Non-Tumor tile's stray tumor probability, but turns a 0.51 into a whole tile.
    tumor_threshold : float in [0, 1] or None, default=None
        None uses every tile. A number keeps only the tiles whose ``P1 + P2`` reaches it,
        in the expected counts and in the argmax counts alike (all ``*_tumor_tiles``,
        ``*_necrotic_tiles`` and fraction columns). It stops Non-Tumor tiles' stray probability
        from pulling the fraction towards 0.5 (e.g. 0.5 for a patient with many Non-Tumor
        tiles); the price is that doubtful tumor tiles are dropped too, a bias if the model
        doubts one tumor class more than the other. 0 keeps every tile as None does.
    member_proba : array-like of shape (n_members, n_tiles, 3) or None, default=None
        Each ensemble member's probabilities of the same tiles (e.g.
        :meth:`SeedEnsemble.predict_proba_members <hiercls.estimator.ensemble.SeedEnsemble.predict_proba_members>`;
        ``proba`` then is usually their mean). Each bootstrap replicate draws a member as
        well as the tiles, so the interval also holds the members' disagreement. The
        estimate itself still comes from ``proba``. Without a bootstrap
        (``n_bootstrap=0``) it is not used.
    error_margin : float in [0, 1] or None, default=None
        An absolute error of the fraction measured on held-out patients
        (:func:`necrosis_error_margin`): the interval becomes ``[low - error_margin,
        high + error_margin]`` clipped to [0, 1]; with ``n_bootstrap=0`` it is the
        estimate plus and minus the margin.

    Returns
    -------
    DataFrame
        One row per group, sorted; the index is named like ``groups`` when it is a named
        Series (e.g. ``"patient"``), else ``"group"``. Columns:

        - ``n_tiles``: tiles of the group;
        - ``expected_tumor_tiles``, ``expected_necrotic_tiles``: ``sum(P1 + P2)``, ``sum(P1)``;
        - ``necrotic_fraction``, ``necrotic_fraction_low``, ``necrotic_fraction_high``:
          the necrotic fraction of the tumor (expected, unless ``fraction="argmax"``) and
          its percentile bootstrap interval (tiles, and members with ``member_proba``,
          resampled with replacement within the group; widened by ``error_margin``);
        - ``viable_fraction``, ``viable_fraction_low``, ``viable_fraction_high``:
          one minus the above;
        - ``argmax_tumor_tiles``, ``necrotic_fraction_argmax``, ``viable_fraction_argmax``:
          the same from counting each tile as its most probable class;
        - ``response``: ``"good"`` (necrotic fraction >= ``threshold``), ``"poor"`` or
          ``"no tumor"``;
        - ``method``: the method of ``necrotic_fraction`` (``"pcc"``, ``"cc"``,
          ``"pacc"``, ...).

        With an adjusted method, ``necrotic_fraction`` and its interval are the
        quantifier's (the ``expected_*`` and ``argmax_*`` columns stay the counts), and
        a group is "no tumor" when its estimated tumor prevalence times its tiles is below
        ``min_tumor_tiles``.

    Raises
    ------
    ValueError
        If ``proba`` is not probabilities, a method is unknown, an adjusted method has no
        ``quantifier``, or ``tumor_threshold`` is combined with an adjusted method.
    SingularAdjustmentError
        If the calibration set cannot support the adjustment (a class missing, a singular
        misclassification matrix).

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

    A Non-Tumor tile's stray probability dilutes the fraction; a tumor threshold keeps it out:

    >>> proba = [[0.8, 0.1, 0.1]] * 9 + [[0.0, 1.0, 0.0]]
    >>> for t in (None, 0.5):
    ...     table = necrosis_from_probabilities(proba, ["A"] * 10, n_bootstrap=0, tumor_threshold=t)
    ...     print(t, round(float(table.loc["A", "necrotic_fraction"]), 3))
    None 0.679
    0.5 1.0
    """
    p = check_probabilities(proba)
    codes, index = _check_groups(groups, p.shape[0])
    n_bootstrap = _check_n_bootstrap(n_bootstrap)
    confidence = _check_real(confidence, "confidence", min_val=0.0, max_val=1.0,
                             include_boundaries="neither")
    threshold = _check_real(threshold, "threshold", min_val=0.0, max_val=1.0)
    min_tumor_tiles = _check_real(min_tumor_tiles, "min_tumor_tiles", min_val=0.0,
                                  include_boundaries="neither")
    tumor_threshold, error_margin = _check_options(fraction, tumor_threshold, error_margin)
    method, quantifier = _resolve_method(method, quantifier, fraction)
    if method in ("cc", "pcc"):
        fraction = "argmax" if method == "cc" else "expected"
    elif tumor_threshold is not None:
        raise ValueError(f"tumor_threshold applies to the counts (method 'cc' or 'pcc'); "
                         f"method={method!r} quantifies the whole bag. Drop tumor_threshold")
    members = None if member_proba is None else _check_member_proba(member_proba, p.shape[0])
    rng = check_random_state(random_state)

    n_groups = len(index)
    necrotic, tumor = _tile_counts(p, "expected", tumor_threshold)
    n_tiles = np.bincount(codes, minlength=n_groups)
    expected_tumor = np.bincount(codes, weights=tumor, minlength=n_groups)
    expected_necrotic = np.bincount(codes, weights=necrotic, minlength=n_groups)
    fraction_expected = _ratio(expected_necrotic, expected_tumor, min_tumor_tiles)

    counted_necrotic, counted_tumor = _tile_counts(p, "argmax", tumor_threshold)
    argmax_tumor = np.bincount(codes, weights=counted_tumor, minlength=n_groups)
    argmax_necrotic = np.bincount(codes, weights=counted_necrotic, minlength=n_groups)
    fraction_argmax = _ratio(argmax_necrotic, argmax_tumor, min_tumor_tiles)

    estimate = fraction_expected if fraction == "expected" else fraction_argmax
    if members is not None:
        # The replicates count as the estimate does, but with each member's probabilities.
        necrotic, tumor = _tile_counts(members, fraction, tumor_threshold)
    elif fraction == "argmax":
        necrotic, tumor = counted_necrotic, counted_tumor

    low = np.full(n_groups, np.nan)
    high = np.full(n_groups, np.nan)
    tail = 100.0 * (1.0 - confidence) / 2.0
    if quantifier is not None:
        estimate = np.full(n_groups, np.nan)
        for g in range(n_groups):
            rows = codes == g
            prevalence = quantifier.quantify(p[rows])
            if (prevalence[_NEC] + prevalence[_VIA]) * rows.sum() < min_tumor_tiles:
                continue  # no tumor to speak of: no fraction, no interval
            estimate[g] = necrotic_fraction(prevalence)
            if n_bootstrap:
                bag_members = None if members is None else members[:, rows]
                replicates = necrotic_fraction(quantifier.bootstrap(
                    p[rows], n_bootstrap, random_state=rng, member_proba=bag_members))
                replicates = replicates[~np.isnan(replicates)]
                if replicates.size:
                    low[g], high[g] = np.percentile(replicates, [tail, 100.0 - tail])
    elif n_bootstrap:
        for g in range(n_groups):
            if np.isnan(estimate[g]):
                continue  # no tumor: no interval either
            rows = codes == g
            replicates = _bootstrap_fractions(necrotic[..., rows], tumor[..., rows],
                                              n_bootstrap, rng)
            replicates = replicates[~np.isnan(replicates)]
            if replicates.size:
                low[g], high[g] = np.percentile(replicates, [tail, 100.0 - tail])
    if error_margin is not None:
        if not n_bootstrap:
            low, high = estimate.copy(), estimate.copy()
        # NaN (no tumor) stays NaN through the clipping.
        low = np.clip(low - error_margin, 0.0, 1.0)
        high = np.clip(high + error_margin, 0.0, 1.0)

    return pd.DataFrame({
        "n_tiles": n_tiles,
        "expected_tumor_tiles": expected_tumor,
        "expected_necrotic_tiles": expected_necrotic,
        "necrotic_fraction": estimate,
        "necrotic_fraction_low": low,
        "necrotic_fraction_high": high,
        "viable_fraction": 1.0 - estimate,
        "viable_fraction_low": 1.0 - high,
        "viable_fraction_high": 1.0 - low,
        "argmax_tumor_tiles": argmax_tumor.astype(np.int64),
        "necrotic_fraction_argmax": fraction_argmax,
        "viable_fraction_argmax": 1.0 - fraction_argmax,
        "response": _response(estimate, threshold),
        "method": method,
    }, index=index)


def _resolve_method(method, quantifier, fraction):
    """The method name and, for an adjusted method, a fitted PrevalenceQuantifier."""
    if method != "auto" and method not in METHODS:
        raise ValueError(f"method must be 'auto' or one of {list(METHODS)}; got {method!r}")
    if quantifier is not None and not isinstance(quantifier, PrevalenceQuantifier):
        try:
            calibration_proba, calibration_y = quantifier
        except (TypeError, ValueError):
            raise TypeError(
                "quantifier must be a fitted PrevalenceQuantifier or a pair "
                f"(calibration_proba, calibration_y); got {type(quantifier).__name__}") from None
        adjusted = DEFAULT_METHOD if method == "auto" else method
        if adjusted in ADJUSTED_METHODS:
            quantifier = PrevalenceQuantifier(adjusted).fit(calibration_proba, calibration_y)
        method = adjusted
    elif quantifier is not None:
        check_is_fitted(quantifier, "quantifier_")
        if method == "auto":
            method = quantifier.method
        elif method != quantifier.method and method in ADJUSTED_METHODS:
            quantifier = PrevalenceQuantifier(method).fit(quantifier.calibration_proba_,
                                                          quantifier.calibration_labels_)
    if method == "auto":
        method = "cc" if fraction == "argmax" else "pcc"
    if method not in ADJUSTED_METHODS:
        return method, None
    if quantifier is None:
        raise ValueError(
            f"method={method!r} needs a calibration set: pass quantifier= (a fitted "
            "PrevalenceQuantifier, e.g. from hiercls.evaluation.quantification.fit_quantifier, "
            "or (calibration_proba, calibration_y) of held-out tiles); without one only "
            "'cc' and 'pcc' are possible")
    return method, quantifier


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
    threshold = _check_real(threshold, "threshold", min_val=0.0, max_val=1.0)
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


def _member_proba(fitted, X):
    """``predict_proba_members`` of an ensemble, or of a pipeline ending in one."""
    if hasattr(fitted, "predict_proba_members"):
        return fitted.predict_proba_members(X)
    if isinstance(fitted, Pipeline) and hasattr(fitted[-1], "predict_proba_members"):
        return fitted[-1].predict_proba_members(fitted[:-1].transform(X))
    raise TypeError(
        f"members=True needs an ensemble with predict_proba_members (such as SeedEnsemble, "
        f"or a pipeline ending in one); got {type(fitted).__name__}")


def necrosis_report(fitted_pipeline, X, groups, *, y=None, method="auto", quantifier=None,
                    n_bootstrap=1000, confidence=0.95,
                    threshold=GOOD_RESPONSE, min_tumor_tiles=MIN_TUMOR_TILES, random_state=0,
                    fraction="expected", tumor_threshold=None, members=False,
                    error_margin=None):
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
    method : str, default="auto"
        As in :func:`necrosis_from_probabilities`: ``"auto"`` quantifies with the
        calibration set when there is one (``quantifier``, or the ``necrosis_quantifier_``
        a model file saved with one brings along, see
        :func:`~hiercls.estimator.persistence.save_model`), else it sums probabilities, and warns.
    quantifier : PrevalenceQuantifier or (proba, y), default=None
        The calibration set (:func:`~hiercls.evaluation.quantification.fit_quantifier`);
        None uses ``fitted_pipeline.necrosis_quantifier_`` where it exists.
    n_bootstrap, confidence, threshold, min_tumor_tiles, random_state, fraction, tumor_threshold, error_margin
        As in :func:`necrosis_from_probabilities`.
    members : bool, default=False
        True passes each ensemble member's probabilities as ``member_proba``: the estimator
        (or a pipeline's last step, such as a
        :class:`~hiercls.estimator.ensemble.SeedEnsemble`) must have
        ``predict_proba_members``.

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

    Warns
    -----
    UncalibratedNecrosisWarning
        With ``method="auto"`` and no calibration set: the expected counts carry the
        training patients' class mix into every estimate (on unseen patients of the TCIA
        set their error was several times the quantified one, ``benchmarks/results/necrosis.md``).

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
    if quantifier is None:
        quantifier = getattr(fitted_pipeline, "necrosis_quantifier_", None)
    if method == "auto" and quantifier is None:
        warnings.warn(
            "no calibration set: the necrotic fraction is the expected count (method='pcc'), "
            "which pulls every estimate towards the training patients' class mix. Fit a "
            "quantifier on out-of-fold predictions (hiercls.evaluation.quantification."
            "fit_quantifier, or `hiercls fit --calibration slide`) and pass quantifier=, or "
            "pass method='pcc' to silence this", UncalibratedNecrosisWarning, stacklevel=2)
    proba = fitted_pipeline.predict_proba(X)
    member_proba = _member_proba(fitted_pipeline, X) if members else None
    estimate = necrosis_from_probabilities(
        proba, groups, method=method, quantifier=quantifier,
        n_bootstrap=n_bootstrap, confidence=confidence, threshold=threshold,
        min_tumor_tiles=min_tumor_tiles, random_state=random_state, fraction=fraction,
        tumor_threshold=tumor_threshold, member_proba=member_proba, error_margin=error_margin)
    if y is None:
        return estimate
    return _with_reference(estimate, reference_necrosis(y, groups, threshold=threshold))


def necrosis_from_evaluation(result, *, method="auto", n_bootstrap=1000, confidence=0.95,
                             threshold=GOOD_RESPONSE, min_tumor_tiles=MIN_TUMOR_TILES,
                             random_state=0, fraction="expected", tumor_threshold=None,
                             error_margin=None):
    """Per-patient necrosis from the out-of-fold probabilities of a cross-validation.

    Parameters
    ----------
    result : EvaluationResult
        What :func:`hiercls.evaluation.cross_validation.cross_validate_by_patient` returned; its
        ``predictions`` give the probabilities, ``patient`` and ``y_true``.
    method : str, default="auto"
        As in :func:`necrosis_from_probabilities`. An adjusted method (``"auto"`` is
        :data:`~hiercls.evaluation.quantification.DEFAULT_METHOD` here) quantifies each
        patient with the *other* patients' out-of-fold predictions as its calibration set:
        they come from models that did not see those tiles either, and no label of the
        patient itself is used. Where the other patients lack a class (with one or two
        patients) an explicit method raises :class:`SingularAdjustmentError`, and
        ``"auto"`` warns and gives that patient the expected count (``method`` column
        ``"pcc"``). ``"pcc"`` and ``"cc"`` are the counts.
    n_bootstrap, confidence, threshold, min_tumor_tiles, random_state, fraction, tumor_threshold, error_margin
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
    options = dict(n_bootstrap=n_bootstrap, confidence=confidence, threshold=threshold,
                   min_tumor_tiles=min_tumor_tiles, random_state=random_state,
                   fraction=fraction, tumor_threshold=tumor_threshold, error_margin=error_margin)
    resolved = DEFAULT_METHOD if method == "auto" and tumor_threshold is None else method
    if resolved in ADJUSTED_METHODS:
        proba = check_probabilities(predictions)
        labels, _ = encode_labels(predictions["y_true"], name="predictions['y_true']")
        parts = []
        for patient in sorted(patients.unique()):
            inside = (patients == patient).to_numpy()
            try:
                quantifier = PrevalenceQuantifier(resolved).fit(proba[~inside], labels[~inside])
            except SingularAdjustmentError as error:
                if method != "auto":
                    raise SingularAdjustmentError(
                        f"patient {patient!r}: the other patients' out-of-fold predictions "
                        f"cannot calibrate method={method!r}: {error}") from None
                warnings.warn(
                    f"patient {patient!r}: the other patients' out-of-fold predictions cannot "
                    f"calibrate {resolved!r} ({error}); its fraction is the expected count "
                    "(method 'pcc' in the table)", UncalibratedNecrosisWarning, stacklevel=2)
                quantifier = None
            parts.append(necrosis_from_probabilities(
                proba[inside], patients[inside], method=resolved if quantifier else "pcc",
                quantifier=quantifier, **options))
        estimate = pd.concat(parts)
    else:
        estimate = necrosis_from_probabilities(predictions, patients, method=method, **options)
    reference = reference_necrosis(predictions["y_true"], patients, threshold=threshold)
    return _with_reference(estimate, reference)


def necrosis_error_margin(estimates, references, *, confidence=0.95):
    """An absolute error of the necrotic fraction, from held-out patients, for ``error_margin``.

    Parameters
    ----------
    estimates : array-like of shape (n_patients,)
        Each held-out patient's estimated necrotic fraction (e.g. the ``necrotic_fraction``
        of :func:`necrosis_from_evaluation`, from models that did not see the patient).
    references : array-like of shape (n_patients,)
        The same patients' fractions from the labels (``reference_necrotic_fraction``).
        Patients where either is NaN (no tumor) are left out.
    confidence : float, default=0.95
        The share of new patients whose error the margin should cover, in (0, 1).

    Returns
    -------
    float
        The ``k``-th smallest of the ``n`` absolute errors, ``k = ceil((n + 1) * confidence)``.
        If the new patient is like the held-out ones (exchangeable with them), its error is
        at most this margin with probability at least ``k / (n + 1) >= confidence`` (the
        split-conformal rule): the empirical quantile, rounded up, which is conservative.

    Warns
    -----
    FewPatientsWarning
        When ``k > n``, i.e. fewer than ``confidence / (1 - confidence)`` patients (19 for
        0.95): the largest error is returned, whose guaranteed coverage is only
        ``n / (n + 1)`` (75 % with 3 patients). With 2 or 3 patients the stated confidence
        can be neither reached nor verified; the margin is then a rough indication.

    Notes
    -----
    The margin bounds the error of the point estimate. Models evaluated by cross-validation
    are trained on fewer patients than the final model, so their errors tend to be larger,
    not smaller; the exchangeability assumption, though, fails for a patient unlike the
    held-out ones (another scanner, another stain).

    Examples
    --------
    >>> from hiercls.evaluation.necrosis import necrosis_error_margin
    >>> estimates = [0.62, 0.53, 0.40, 0.95, 0.30]
    >>> references = [0.977, 0.009, 0.50, 0.90, 0.25]
    >>> round(necrosis_error_margin(estimates, references, confidence=0.5), 3)
    0.1
    """
    confidence = _check_real(confidence, "confidence", min_val=0.0, max_val=1.0,
                             include_boundaries="neither")
    pairs = []
    for name, values in (("estimates", estimates), ("references", references)):
        try:
            values = np.asarray(values, dtype=float)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be numeric fractions in [0, 1]") from None
        if values.ndim != 1:
            raise ValueError(f"{name} must be one-dimensional; got shape {values.shape}")
        known = values[~np.isnan(values)]
        if known.size and (known.min() < 0.0 or known.max() > 1.0):
            raise ValueError(f"{name} must be fractions in [0, 1] (or NaN); got values in "
                             f"[{known.min():g}, {known.max():g}]")
        pairs.append(values)
    estimates, references = pairs
    if estimates.shape != references.shape:
        raise ValueError(f"estimates and references must have one value per patient each; got "
                         f"{estimates.size} and {references.size}")
    known = ~(np.isnan(estimates) | np.isnan(references))
    errors = np.sort(np.abs(estimates[known] - references[known]))
    n = errors.size
    if n == 0:
        raise ValueError("no patient has both an estimate and a reference fraction; expected "
                         "at least one held-out patient with tumor")
    k = math.ceil((n + 1) * confidence - 1e-9)  # a product such as 20 * 0.95 may land a hair above its integer
    if k > n:
        warnings.warn(
            f"{n} patient(s) cannot support a margin at confidence {confidence:g} (that needs "
            f"at least {math.ceil(confidence / (1 - confidence) - 1e-9)}); the largest error "
            f"is used, which covers a new patient with probability >= {n / (n + 1):.2f} only",
            FewPatientsWarning, stacklevel=2)
        k = n
    return float(errors[k - 1])
