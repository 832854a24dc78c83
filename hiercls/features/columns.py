"""What every transformer of the tile table shares: its output columns."""

import numpy as np
from sklearn.utils.validation import check_is_fitted


class TileTableColumnsMixin:
    """``get_feature_names_out`` of a transformer that passes the tile table's columns on.

    The output columns are those seen in ``fit`` followed by the ones the transformer adds,
    :meth:`_added_feature_names` (none by default).
    """

    def _added_feature_names(self):
        return []

    def get_feature_names_out(self, input_features=None):
        """The output columns: the input columns seen in ``fit``, then any added ones.

        Parameters
        ----------
        input_features : array-like of str or None, default=None
            Must equal the columns seen in ``fit`` when given.

        Returns
        -------
        feature_names_out : ndarray of str
        """
        check_is_fitted(self, "feature_names_in_")
        if input_features is not None and list(input_features) != list(self.feature_names_in_):
            raise ValueError("input_features does not match the columns seen in fit")
        return np.asarray([*self.feature_names_in_, *self._added_feature_names()], dtype=object)
