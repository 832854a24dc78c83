"""The internal train/validation split of a fit, drawn by patient when patients are known."""

import warnings

import numpy as np
from sklearn.model_selection import GroupShuffleSplit, ShuffleSplit, StratifiedShuffleSplit
from sklearn.utils.metadata_routing import MetadataRequest
from torch.utils.data import Subset


class GroupedValidSplit:
    """Hold out a fraction of the training data for validation (early stopping).

    A skorch ``train_split``: called with the dataset, the labels and, when the fit got
    them, the groups. With ``by="groups"`` and at least two groups the held-out part is
    whole groups (:class:`~sklearn.model_selection.GroupShuffleSplit`), so no patient is on
    both sides; otherwise it is a stratified random split of tiles.

    Parameters
    ----------
    fraction : float, default=0.2
        Share of groups (or of tiles) held out.
    random_state : int or None, default=None
        Seed of the split; the classifier supplies its own ``random_state`` when this is
        None.
    by : {"groups", "tiles"}, default="groups"
        ``"groups"`` holds out whole groups whenever the fit got them; ``"tiles"`` draws a
        stratified split of tiles whatever groups are given. With three training patients,
        holding one out for validation takes a third of the data and most of a class with
        it (``benchmarks/generalization.py`` measures both).

    Notes
    -----
    The classifier gives it the ``groups`` of its ``fit``. Inside a Pipeline or a search,
    the patients reach that ``fit`` by ``classifier__groups=groups`` or, with scikit-learn's
    metadata routing, by ``classifier.set_fit_request(groups=True)`` (this split requests
    ``groups`` of its own accord, as ``GroupKFold`` does); otherwise it draws tiles.
    See docs/grid-search.md.

    Examples
    --------
    >>> import numpy as np
    >>> from hiercls.estimator.splits import GroupedValidSplit
    >>> y = np.tile([0, 1, 2], 5)
    >>> patients = np.repeat(["a", "b", "c", "d", "e"], 3)
    >>> train, valid = GroupedValidSplit(0.2, random_state=0).split_indices(y, patients)
    >>> len(set(patients[valid])), set(patients[train]) & set(patients[valid])
    (1, set())
    """

    def __init__(self, fraction=0.2, random_state=None, by="groups"):
        self.fraction = fraction
        self.random_state = random_state
        self.by = by

    def __repr__(self):
        by = "" if self.by == "groups" else f", by={self.by!r}"
        return (f"GroupedValidSplit(fraction={self.fraction!r}, "
                f"random_state={self.random_state!r}{by})")

    def get_metadata_routing(self):
        """Metadata routing: the split consumes ``groups``, like scikit-learn's group splitters."""
        request = MetadataRequest(owner=type(self).__name__)
        request.split.add_request(param="groups", alias=True)
        return request

    def split(self, X, y=None, groups=None):
        """Yield the one (train indices, validation indices) pair, as a CV splitter does."""
        yield self.split_indices(y if y is not None else np.zeros(len(X)), groups)

    def split_indices(self, y, groups=None, random_state=None):
        """(train indices, validation indices)."""
        if not 0.0 < self.fraction < 1.0:
            raise ValueError(f"fraction must lie in (0, 1); got {self.fraction!r}")
        if self.by not in ("groups", "tiles"):
            raise ValueError(f"by must be 'groups' or 'tiles'; got {self.by!r}")
        if self.by == "tiles":
            groups = None
        seed = self.random_state if self.random_state is not None else random_state
        y = np.asarray(y)
        index = np.arange(len(y))
        if groups is not None:
            groups = np.asarray(groups)
            if len(groups) != len(y):
                raise ValueError(f"groups has {len(groups)} entries; expected one per tile ({len(y)})")
            if len(np.unique(groups)) >= 2:
                splitter = GroupShuffleSplit(n_splits=1, test_size=self.fraction, random_state=seed)
                return next(splitter.split(index, y, groups))
            warnings.warn("groups has a single patient; the validation split is drawn by tile",
                          UserWarning, stacklevel=3)
        try:
            splitter = StratifiedShuffleSplit(n_splits=1, test_size=self.fraction, random_state=seed)
            return next(splitter.split(index, y))
        except ValueError:
            # A class too rare to stratify: fall back to a plain random split.
            splitter = ShuffleSplit(n_splits=1, test_size=self.fraction, random_state=seed)
            return next(splitter.split(index))

    def __call__(self, dataset, y=None, groups=None, random_state=None):
        train, valid = self.split_indices(y, groups, random_state)
        return Subset(dataset, train), Subset(dataset, valid)
