"""The three tile classes and the two binary questions the hierarchy asks of them."""

import numpy as np
import pandas as pd

#: Class names in code order: 0 = Non-Tumor, 1 = Non-Viable-Tumor, 2 = Viable-Tumor.
CLASS_NAMES = ("Non-Tumor", "Non-Viable-Tumor", "Viable-Tumor")
CLASS_CODES = (0, 1, 2)

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


def tumor_target(codes):
    """Head A's target: 1 for tumor (classes 1 and 2), 0 for non-tumor.

    >>> tumor_target([0, 1, 2])
    array([0, 1, 1])
    """
    return (np.asarray(codes) != 0).astype(np.int64)


def viable_target(codes):
    """Head B's target on tumor tiles: 1 for viable, 0 for non-viable; -1 where undefined.

    >>> viable_target([0, 1, 2])
    array([-1,  0,  1])
    """
    codes = np.asarray(codes)
    return np.where(codes == 0, -1, (codes == 2).astype(np.int64))
