"""Necrosis of a fitted pipeline, of a cross-validation, and the error margin of held-out patients."""

import math
import warnings

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from ...data.labels import CLASS_NAMES, check_probabilities, encode_labels
from ...exceptions import FewPatientsWarning, UncalibratedNecrosisWarning
from ...validation import check_groups, check_number
from ..quantification import (
    ADJUSTED_METHODS,
    DEFAULT_METHOD,
    PrevalenceQuantifier,
    SingularAdjustmentError,
)
from .estimates import (
    GOOD_RESPONSE,
    MIN_TUMOR_TILES,
    necrosis_from_probabilities,
    reference_necrosis,
)


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


def _column_or_values(X, values, name, table="X"):
    """``X[values]`` where ``values`` names a column of ``X``, else ``values`` as given."""
    if not isinstance(values, str):
        return values
    if not isinstance(X, pd.DataFrame) or values not in X.columns:
        raise ValueError(f"{name}={values!r} names no column of {table}; expected a column "
                         f"name of {table} or one value per tile")
    return X[values]


def necrosis_report(fitted_pipeline, X, groups, *, y=None, method="auto", quantifier=None,
                    n_bootstrap=1000, confidence=0.95,
                    threshold=GOOD_RESPONSE, min_tumor_tiles=MIN_TUMOR_TILES, random_state=0,
                    fraction="expected", tumor_threshold=None, members=False,
                    error_margin=None, slides=None):
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
        :func:`~hiercls.persistence.save_model`), else it sums probabilities, and warns.
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
    slides : array-like of shape (n_tiles,), str or None, default=None
        The slide of each tile, or the name of the column of ``X`` that holds it (such as
        ``"slide"`` of :func:`~hiercls.data.datasets.load_osteosarcoma_ut`): the bootstrap
        resamples whole slides, as in :func:`necrosis_from_probabilities`.

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
    groups = _column_or_values(X, groups, "groups")
    slides = _column_or_values(X, slides, "slides")
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
        tumor_threshold=tumor_threshold, member_proba=member_proba, error_margin=error_margin,
        slides=slides)
    if y is None:
        return estimate
    return _with_reference(estimate, reference_necrosis(y, groups, threshold=threshold))


def necrosis_from_evaluation(result, *, method="auto", n_bootstrap=1000, confidence=0.95,
                             threshold=GOOD_RESPONSE, min_tumor_tiles=MIN_TUMOR_TILES,
                             random_state=0, fraction="expected", tumor_threshold=None,
                             error_margin=None, slides=None):
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
    slides : array-like of shape (n_tiles,), str or None, default=None
        The slide of each row of ``result.predictions``, or the name of its column that
        holds it (``"slide"`` in what ``hiercls evaluate`` saves): the bootstrap then
        resamples whole slides of each patient and of its calibration set, as in
        :func:`necrosis_from_probabilities`. None resamples tiles.

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
    if slides is not None:
        # As codes, checked once, before any patient is quantified.
        slides = check_groups(_column_or_values(predictions, slides, "slides",
                                                "result.predictions"),
                              len(predictions), "slides", "slide")[0]
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
                quantifier = PrevalenceQuantifier(resolved).fit(
                    proba[~inside], labels[~inside],
                    groups=None if slides is None else slides[~inside])
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
                quantifier=quantifier, slides=None if slides is None else slides[inside],
                **options))
        estimate = pd.concat(parts)
    else:
        estimate = necrosis_from_probabilities(predictions, patients, method=method,
                                               slides=slides, **options)
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
    confidence = check_number(confidence, "confidence", low=0.0, high=1.0, closed="neither")
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
