"""The checks of the tiles the classifier is given: the frame and its radiomic columns."""

import re

import pandas as pd

from ..data.images import check_image_frame
from ..features.radiomics.names import RADIOMIC_COLUMN_PATTERN


def find_radiomic_columns(X):
    """The columns of ``X`` whose names are radiomic feature names."""
    pattern = re.compile(RADIOMIC_COLUMN_PATTERN)
    return [str(column) for column in X.columns if pattern.match(str(column))]


def select_radiomic_columns(X, radiomic_columns, *, use_radiomics):
    """The columns ``radiomic_columns`` (``"auto"`` or a list) picks in ``X``; an error
    when radiomics are used and there are none."""
    columns = (find_radiomic_columns(X) if isinstance(radiomic_columns, str)
               and radiomic_columns == "auto" else list(radiomic_columns))
    if use_radiomics and not columns:
        raise ValueError(
            "X has no radiomic columns (names like 'firstorder_Mean'); put a "
            "RadiomicsTransformer before the classifier (see make_fusion_pipeline) "
            "or set use_radiomics=False"
        )
    return columns


def check_tile_frame(X, *, use_image):
    """Check that ``X`` is a DataFrame, with an ``image`` column when ``use_image``."""
    if use_image:
        return check_image_frame(X)
    if not isinstance(X, pd.DataFrame):
        raise TypeError(f"X must be a pandas DataFrame; got {type(X).__name__}")
    return X


def check_radiomic_values(X, radiomic_columns):
    """Check that ``X`` has the ``radiomic_columns``, numeric and without NaN."""
    missing = [c for c in radiomic_columns if c not in X.columns]
    if missing:
        raise ValueError(f"X lacks the radiomic columns {missing[:5]} seen in fit")
    values = X[radiomic_columns]
    non_numeric = [c for c in values.columns if not pd.api.types.is_numeric_dtype(values[c])]
    if non_numeric:
        raise ValueError(f"radiomic columns must be numeric; {non_numeric[:5]} are not")
    nan_counts = values.isna().sum()
    if nan_counts.any():
        bad = nan_counts[nan_counts > 0]
        raise ValueError(
            f"radiomic columns contain NaN: {dict(bad.head(5))} (column: rows); impute or "
            "drop those tiles before fitting or predicting"
        )
    return X
