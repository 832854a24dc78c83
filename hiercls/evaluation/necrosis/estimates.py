"""The necrotic fraction of each group from probabilities, and from the tile labels."""

import numpy as np
import pandas as pd
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from ...data.labels import CLASS_NAMES, check_probabilities, encode_labels
from ...validation import check_groups, check_number
from ..quantification import (
    ADJUSTED_METHODS,
    DEFAULT_METHOD,
    METHODS,
    PrevalenceQuantifier,
    necrotic_fraction,
)
from .counts import _NEC, _VIA, _bootstrap_fractions, _check_groups, _check_member_proba, _ratio, _tile_counts

#: Least necrotic fraction of the tumor that counts as a good response to chemotherapy.
GOOD_RESPONSE = 0.90

#: Least (expected) number of tumor tiles a group needs for its fractions to be estimated.
MIN_TUMOR_TILES = 1.0

#: The response of a group with too few tumor tiles.
NO_TUMOR = "no tumor"

#: How tiles' probabilities become counts: expected counts, or each tile as its likeliest class.
FRACTIONS = ("expected", "argmax")




def _check_n_bootstrap(value):
    return check_number(value, "n_bootstrap", integer=True, low=0,
                        expected="an int >= 0 (0: no interval)")


def _check_options(fraction, tumor_threshold, error_margin):
    if not isinstance(fraction, str) or fraction not in FRACTIONS:
        raise ValueError(f"fraction must be one of {list(FRACTIONS)}; got {fraction!r}")
    if tumor_threshold is not None:
        tumor_threshold = check_number(tumor_threshold, "tumor_threshold", low=0.0, high=1.0)
    if error_margin is not None:
        error_margin = check_number(error_margin, "error_margin", low=0.0, high=1.0)
    return tumor_threshold, error_margin


def _response(necrotic_fraction, threshold):
    return np.where(np.isnan(necrotic_fraction), NO_TUMOR,
                    np.where(necrotic_fraction >= threshold, "good", "poor")).astype(object)


def necrosis_from_probabilities(proba, groups, *, method="auto", quantifier=None,
                                n_bootstrap=1000, confidence=0.95,
                                threshold=GOOD_RESPONSE, min_tumor_tiles=MIN_TUMOR_TILES,
                                random_state=0, fraction="expected", tumor_threshold=None,
                                member_proba=None, error_margin=None, slides=None):
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
    slides : array-like of shape (n_tiles,) or None, default=None
        The slide of each tile. Tiles of one slide share its stain, cut and share of
        necrosis, so they are not independent draws: with ``slides`` the bootstrap
        resamples a group's whole slides (a cluster bootstrap; a group of a single slide,
        its tiles), and an adjusted method's calibration set is resampled by the slides
        its :class:`~hiercls.evaluation.quantification.PrevalenceQuantifier` was fitted
        with. Without it tiles are resampled, and the interval is narrower than the
        patient's slides warrant. The estimate does not change.

    Returns
    -------
    DataFrame
        One row per group, sorted; the index is named like ``groups`` when it is a named
        Series (e.g. ``"patient"``), else ``"group"``. Columns:

        - ``n_tiles``: tiles of the group;
        - ``expected_tumor_tiles``, ``expected_necrotic_tiles``: ``sum(P1 + P2)``, ``sum(P1)``;
        - ``necrotic_fraction``, ``necrotic_fraction_low``, ``necrotic_fraction_high``:
          the necrotic fraction of the tumor (expected, unless ``fraction="argmax"``) and
          its percentile bootstrap interval (tiles, or slides with ``slides``, and members
          with ``member_proba``, resampled with replacement within the group; widened by
          ``error_margin``);
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
    confidence = check_number(confidence, "confidence", low=0.0, high=1.0, closed="neither")
    threshold = check_number(threshold, "threshold", low=0.0, high=1.0)
    min_tumor_tiles = check_number(min_tumor_tiles, "min_tumor_tiles", low=0.0, closed="neither")
    tumor_threshold, error_margin = _check_options(fraction, tumor_threshold, error_margin)
    method, quantifier = _resolve_method(method, quantifier, fraction)
    if method in ("cc", "pcc"):
        fraction = "argmax" if method == "cc" else "expected"
    elif tumor_threshold is not None:
        raise ValueError(f"tumor_threshold applies to the counts (method 'cc' or 'pcc'); "
                         f"method={method!r} quantifies the whole bag. Drop tumor_threshold")
    members = None if member_proba is None else _check_member_proba(member_proba, p.shape[0])
    slide_codes = None if slides is None else check_groups(slides, p.shape[0], "slides",
                                                           "slide")[0]
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
                bag_slides = None if slide_codes is None else slide_codes[rows]
                replicates = necrotic_fraction(quantifier.bootstrap(
                    p[rows], n_bootstrap, random_state=rng, member_proba=bag_members,
                    groups=bag_slides))
                replicates = replicates[~np.isnan(replicates)]
                if replicates.size:
                    low[g], high[g] = np.percentile(replicates, [tail, 100.0 - tail])
    elif n_bootstrap:
        for g in range(n_groups):
            if np.isnan(estimate[g]):
                continue  # no tumor: no interval either
            rows = codes == g
            group_necrotic, group_tumor = necrotic[..., rows], tumor[..., rows]
            if slide_codes is not None:
                _, within = np.unique(slide_codes[rows], return_inverse=True)
                if within.max() > 0:
                    # A cluster bootstrap of a sum: resample the slides' sums.
                    group_necrotic, group_tumor = (_sum_by(v, within)
                                                   for v in (group_necrotic, group_tumor))
            replicates = _bootstrap_fractions(group_necrotic, group_tumor, n_bootstrap, rng)
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


def _sum_by(values, codes):
    """Sums of ``values`` (n_tiles,) or (n_members, n_tiles) over the tiles of each code."""
    return np.stack([np.bincount(codes, weights=row) for row in np.atleast_2d(values)]
                    ).reshape(values.shape[:-1] + (codes.max() + 1,))


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
    threshold = check_number(threshold, "threshold", low=0.0, high=1.0)
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
