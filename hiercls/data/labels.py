"""The three tile classes, the two binary questions the hierarchy asks of them, and the
one validator of class-probability arrays.

The hierarchy lives here and nowhere else: head A asks "tumor?" (:func:`tumor_target`),
head B asks "viable?" of tumor tiles (:func:`viable_target`), and
:func:`compose_probabilities` turns the two answers into the three class probabilities.
The loss, the network and the estimator call these rather than spelling out codes.
"""

import numbers

import numpy as np
import pandas as pd
from sklearn.utils import check_scalar

#: Class names in code order: 0 = Non-Tumor, 1 = Non-Viable-Tumor, 2 = Viable-Tumor.
CLASS_NAMES = ("Non-Tumor", "Non-Viable-Tumor", "Viable-Tumor")
CLASS_CODES = (0, 1, 2)

#: The codes by name.
NON_TUMOR, NON_VIABLE_TUMOR, VIABLE_TUMOR = CLASS_CODES
#: Codes head A calls tumor; every other code is non-tumor.
TUMOR_CODES = (NON_VIABLE_TUMOR, VIABLE_TUMOR)
#: Codes, among :data:`TUMOR_CODES`, head B calls viable.
VIABLE_CODES = (VIABLE_TUMOR,)

#: How far a probability may lie outside [0, 1], and a row's sum from 1, in
#: :func:`check_probabilities`: float32 softmax products are off by ~1e-7, a genuine
#: mistake (logits, unnormalized scores, a dropped column) by far more.
PROBABILITY_TOLERANCE = 1e-5

_NAME_TO_CODE = {name: code for code, name in enumerate(CLASS_NAMES)}


def encode_labels(y, *, name="y"):
    """Map labels given as codes (0/1/2) or class names to integer codes.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Labels, either all integers in {0, 1, 2} or all strings in :data:`CLASS_NAMES`.
    name : str, default="y"
        How the input is called in error messages.

    Returns
    -------
    codes : ndarray of shape (n_samples,), dtype int64
    classes : ndarray of shape (3,)
        The three classes in the form ``y`` used (integers or names), in code order.

    Raises
    ------
    ValueError
        If a label is neither a known code nor a known class name.

    Examples
    --------
    >>> codes, classes = encode_labels(["Viable-Tumor", "Non-Tumor", "Non-Viable-Tumor"])
    >>> codes
    array([2, 0, 1])
    >>> list(classes)
    ['Non-Tumor', 'Non-Viable-Tumor', 'Viable-Tumor']
    >>> encode_labels([0, 3])
    Traceback (most recent call last):
    ...
    ValueError: y contains label 3; expected labels in {0, 1, 2} or {...}
    """
    values = np.asarray(y.to_numpy() if isinstance(y, (pd.Series, pd.Index)) else y, dtype=object)
    if values.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional; got shape {values.shape}")
    if values.size == 0:
        raise ValueError(f"{name} is empty; expected one label per tile")
    if all(isinstance(v, str) for v in values):
        unknown = sorted(set(values) - set(CLASS_NAMES))
        if unknown:
            raise ValueError(
                f"{name} contains label {unknown[0]!r}; expected labels in {{0, 1, 2}} "
                f"or {set(CLASS_NAMES)}"
            )
        return np.array([_NAME_TO_CODE[v] for v in values], dtype=np.int64), np.array(CLASS_NAMES, dtype=object)
    try:
        numeric = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        bad = next(v for v in values if not isinstance(v, str))
        raise ValueError(
            f"{name} mixes label types (e.g. {bad!r}); expected all of {{0, 1, 2}} "
            f"or all of {set(CLASS_NAMES)}"
        ) from None
    bad = [v for v in numeric if not (np.isfinite(v) and v in CLASS_CODES)]
    if bad:
        shown = int(bad[0]) if np.isfinite(bad[0]) and float(bad[0]).is_integer() else bad[0]
        raise ValueError(
            f"{name} contains label {shown}; expected labels in {{0, 1, 2}} or {set(CLASS_NAMES)}"
        )
    return numeric.astype(np.int64), np.array(CLASS_CODES)


def _is_tensor(values):
    # The loss hands torch tensors (possibly on a GPU); this layer does not import torch.
    return type(values).__module__.split(".")[0] == "torch"


def _isin(values, codes):
    if _is_tensor(values):
        return values.new_tensor(codes).eq(values.unsqueeze(-1)).any(-1)
    return np.isin(values, codes)


def tumor_target(codes):
    """Head A's target: 1 for tumor (:data:`TUMOR_CODES`), 0 for non-tumor.

    Parameters
    ----------
    codes : array-like or torch.Tensor of integer class codes

    Returns
    -------
    target : ndarray of int64, or a torch int64 tensor on the device of ``codes``

    >>> tumor_target([0, 1, 2])
    array([0, 1, 1])
    """
    if _is_tensor(codes):
        return _isin(codes, TUMOR_CODES).long()
    return _isin(np.asarray(codes), TUMOR_CODES).astype(np.int64)


def viable_target(codes):
    """Head B's target on tumor tiles: 1 for viable, 0 for non-viable; -1 where undefined.

    Parameters
    ----------
    codes : array-like or torch.Tensor of integer class codes

    Returns
    -------
    target : ndarray of int64, or a torch int64 tensor on the device of ``codes``

    >>> viable_target([0, 1, 2])
    array([-1,  0,  1])
    """
    if _is_tensor(codes):
        viable = _isin(codes, VIABLE_CODES).long()
        return viable.masked_fill(~_isin(codes, TUMOR_CODES), -1)
    codes = np.asarray(codes)
    return np.where(_isin(codes, TUMOR_CODES), _isin(codes, VIABLE_CODES).astype(np.int64), -1)


def compose_probabilities(p_tumor, p_viable):
    """The three class probabilities from the hierarchy's two binary answers.

    ``P(Non-Tumor) = P(non-tumor)``, ``P(Non-Viable-Tumor) = P(tumor) P(non-viable | tumor)``,
    ``P(Viable-Tumor) = P(tumor) P(viable | tumor)``; rows sum to one when both inputs' do.

    Parameters
    ----------
    p_tumor : ndarray or torch.Tensor of shape (n_samples, 2)
        Head A's probabilities, columns (non-tumor, tumor).
    p_viable : ndarray or torch.Tensor of shape (n_samples, 2)
        Head B's probabilities given tumor, columns (non-viable, viable).

    Returns
    -------
    proba : same type as the inputs, shape (n_samples, 3), columns in code order

    Examples
    --------
    >>> import numpy as np
    >>> compose_probabilities(np.array([[0.25, 0.75]]), np.array([[0.5, 0.5]]))
    array([[0.25 , 0.375, 0.375]])
    """
    columns = [None] * len(CLASS_CODES)
    columns[NON_TUMOR] = p_tumor[:, :1]
    columns[NON_VIABLE_TUMOR] = p_tumor[:, 1:] * p_viable[:, :1]
    columns[VIABLE_TUMOR] = p_tumor[:, 1:] * p_viable[:, 1:]
    if _is_tensor(p_tumor):
        import torch

        return torch.cat(columns, dim=1)
    return np.concatenate(columns, axis=1)


def check_probabilities(proba, *, name="proba", n_classes=3, scores=False):
    """Validate an array of class probabilities; return it as a float ndarray.

    The one validator of probability arrays in hiercls. A DataFrame holding the columns
    :data:`CLASS_NAMES` (among others, like an evaluation's ``predictions``) gives those
    columns in code order; any other DataFrame is taken as it is.

    Parameters
    ----------
    proba : array-like or DataFrame of shape (n_samples, n_classes)
    name : str, default="proba"
        How the input is called in error messages.
    n_classes : int, default=3
        The number of columns expected, in code order.
    scores : bool, default=False
        True accepts any finite scores (higher meaning more likely), as ranking metrics
        need no more: only the shape, numeric type and finiteness are checked. False also
        requires every value in [0, 1] and every row to sum to 1, both within
        :data:`PROBABILITY_TOLERANCE`.

    Returns
    -------
    proba : ndarray of shape (n_samples, n_classes), dtype float64

    Raises
    ------
    ValueError
        If ``proba`` is not numeric, has another shape or no rows, holds NaN or infinite
        values, or (``scores=False``) values outside [0, 1] or rows not summing to 1.
        The message names ``name``.

    Examples
    --------
    >>> check_probabilities([[0.2, 0.3, 0.5]])
    array([[0.2, 0.3, 0.5]])
    >>> check_probabilities([[0.2, 0.3, 0.6]], name="p")
    Traceback (most recent call last):
    ...
    ValueError: p must have rows summing to 1 (within 1e-05); row 0 sums to 1.1
    """
    check_scalar(n_classes, "n_classes", numbers.Integral, min_val=1)
    if isinstance(proba, pd.DataFrame):
        columns = list(CLASS_NAMES) if n_classes == len(CLASS_NAMES) else []
        if columns and all(column in proba.columns for column in columns):
            proba = proba[columns]
        proba = proba.to_numpy()
    try:
        p = np.asarray(proba, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numeric, of shape (n_samples, {n_classes}); got "
                         f"{type(proba).__name__} that does not convert to floats") from None
    if p.ndim != 2 or p.shape[1] != n_classes or p.shape[0] == 0:
        order = (f" with columns {list(CLASS_NAMES)} in this order"
                 if n_classes == len(CLASS_NAMES) else "")
        raise ValueError(f"{name} must have shape (n_samples, {n_classes}){order} and at least "
                         f"one row; got shape {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError(f"{name} contains NaN or infinite values; expected "
                         + ("finite scores" if scores else "probabilities"))
    if scores:
        return p
    tol = PROBABILITY_TOLERANCE
    if p.min() < -tol or p.max() > 1.0 + tol:
        raise ValueError(f"{name} must hold probabilities in [0, 1]; got values in "
                         f"[{p.min():g}, {p.max():g}]")
    sums = p.sum(axis=1)
    off = np.flatnonzero(np.abs(sums - 1.0) > tol)
    if off.size:
        raise ValueError(f"{name} must have rows summing to 1 (within {tol:g}); row {off[0]} "
                         f"sums to {sums[off[0]]:g}")
    return p
