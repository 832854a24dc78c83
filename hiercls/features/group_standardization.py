"""Per-group standardization: each patient's (or slide's) features on a common scale.

A tile's backbone features and radiomics carry its patient's stain, scanner and
fixation as much as its class, and with four patients a classifier learns both. Giving
every group of tiles (a patient, a slide) zero mean and unit variance per feature, with
the statistics of that group's own tiles, removes what is common to all of a group's
tiles. It is done alike in training (each training patient with its own statistics) and
in prediction, where the group's tiles are the bag being predicted: unlabeled tiles of one
case are at hand in practice, and no label is read. It is the feature-level counterpart
of AdaBN (Li et al., 2016, "Revisiting batch normalization for practical domain
adaptation"), which re-estimates batch-norm statistics on the target domain.

What it costs (docs/stain.md, "Per-patient standardization"): a group's mean also holds
its class mix, so a patient whose tiles are nearly all of one class is centred on that
class. Whether the gain outweighs that is to be measured (``benchmarks/necrosis.py
--levers``), not assumed.
"""

import numpy as np

#: The smallest group whose statistics are used; a single tile has no spread.
MIN_GROUP_SIZE = 2

# Features constant within a group keep a unit scale instead of a division by ~0.
_EPS = 1e-6


def group_labels(X, column, parameter="standardize_by"):
    """The groups of the rows of ``X``: the values of its column ``column``.

    Parameters
    ----------
    X : DataFrame
    column : str
        The column naming each tile's group (``"patient"``, ``"slide"``).
    parameter : str, default="standardize_by"
        The parameter that named the column, for the errors.

    Returns
    -------
    groups : ndarray of shape (n_samples,)
    """
    if column not in X.columns:
        raise ValueError(
            f"{parameter}={column!r} reads each tile's {column}, but "
            f"X has no {column!r} column; give each tile's {column} in that column (all rows "
            "one value when the tiles are one case)")
    groups = X[column].to_numpy()
    missing = [i for i, value in enumerate(groups) if value is None or value != value]
    if missing:
        raise ValueError(f"column {column!r} of X has no value in rows {missing[:5]}; "
                         f"{parameter}={column!r} needs each tile's {column}")
    return groups


def standardize_within_groups(values, groups, *, feature_axis=-1):
    """Standardize ``values`` within each group, per feature.

    Parameters
    ----------
    values : ndarray of shape (n_samples, ...)
        One entry per tile along axis 0 (radiomics ``(n, r)``, a frozen backbone's views
        ``(n, views, F)`` or maps ``(n, views, C, h, w)``).
    groups : array-like of shape (n_samples,)
        Each tile's group.
    feature_axis : int, default=-1
        The axis of the features; the statistics are taken over every other axis, within
        each group (the tiles and, for views or maps, those too).

    Returns
    -------
    standardized : ndarray of float32, the shape of ``values``
        A new array (``values`` is not changed).

    Examples
    --------
    >>> import numpy as np
    >>> from hiercls.features.group_standardization import standardize_within_groups
    >>> values = np.array([[1.0], [3.0], [10.0], [30.0]])
    >>> standardize_within_groups(values, ["a", "a", "b", "b"]).ravel().tolist()
    [-1.0, 1.0, -1.0, 1.0]
    """
    values = np.asarray(values, dtype=np.float32)
    groups = np.asarray(groups)
    if values.ndim < 2 or len(groups) != len(values):
        raise ValueError(f"values must have one row per group label: got values of shape "
                         f"{values.shape} and {len(groups)} group labels")
    axis = feature_axis % values.ndim
    if axis == 0:
        raise ValueError("feature_axis must not be axis 0, the tiles")
    reduce = tuple(i for i in range(values.ndim) if i != axis)
    out = np.empty_like(values)
    labels, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    small = labels[counts < MIN_GROUP_SIZE]
    if small.size:
        raise ValueError(
            f"group(s) {small[:5].tolist()} have fewer than {MIN_GROUP_SIZE} tiles; "
            "per-group standardization needs the statistics of several tiles of a group")
    for index in range(len(labels)):
        inside = inverse == index
        block = values[inside].astype(np.float64)
        mean = block.mean(axis=reduce, keepdims=True)
        std = block.std(axis=reduce, keepdims=True)
        out[inside] = ((block - mean) / np.where(std > _EPS, std, 1.0)).astype(np.float32)
    return out
