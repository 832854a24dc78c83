"""The errors and warnings of hiercls, in one place (as :mod:`sklearn.exceptions`).

Each class is also importable from the module that raises it, where it was defined before
(``hiercls.data.images.UnreadableTileError``, ...), so that existing imports keep working.
Catch the warnings by category, e.g.
``warnings.simplefilter("ignore", hiercls.exceptions.TileSizeWarning)``.

Examples
--------
>>> from hiercls.exceptions import InvalidParameterError
>>> issubclass(InvalidParameterError, ValueError) and issubclass(InvalidParameterError, TypeError)
True
"""

from sklearn.exceptions import UndefinedMetricWarning as _SklearnUndefinedMetricWarning

__all__ = [
    "CommandError",
    "FewPatientsWarning",
    "InvalidParameterError",
    "ModelFileError",
    "RadiomicsMaskWarning",
    "RandomFrozenBackboneWarning",
    "ResolutionMismatchWarning",
    "ResolutionUnknownWarning",
    "SingularAdjustmentError",
    "SlideReadError",
    "StainNormalizationWarning",
    "TileSizeWarning",
    "UncalibratedNecrosisWarning",
    "UndefinedMetricWarning",
    "UnreadableTileError",
]

#: How many bad tiles an :class:`UnreadableTileError` message names.
_NAMED_IN_MESSAGE = 5


# --- errors ------------------------------------------------------------------------------

class InvalidParameterError(ValueError, TypeError):
    """A parameter or argument of the wrong type or out of its range.

    A subclass of both ``ValueError`` and ``TypeError`` (as scikit-learn's own), so that
    callers catching either keep working whichever of the two was wrong.
    """


class UnreadableTileError(ValueError):
    """Tiles that cannot be decoded into an RGB image.

    Raised by :func:`hiercls.data.images.read_tile` for one tile and by
    :func:`hiercls.data.images.check_tiles` for all the bad tiles of a frame at once. A
    subclass of ``ValueError``.

    Parameters
    ----------
    paths : list of str
        The bad tiles: file paths, or ``"row <k>"`` for a tile given as an array. A
        single string is taken as the whole message (attributes then empty).
    reasons : list of str or None
        Why each could not be read, in the same order.
    rows : list of int or None
        The bad tiles' positions in the frame that was checked (None for one tile).

    Attributes
    ----------
    paths, reasons, rows : as given.
    """

    def __init__(self, paths, reasons=None, rows=None):
        if isinstance(paths, str):
            # A finished message: torch's DataLoader rebuilds a worker's exception from
            # its text alone, which names the tile already.
            self.paths, self.reasons, self.rows = [], [], None
            super().__init__(paths)
            return
        self.paths = [str(p) for p in paths]
        self.reasons = list(reasons) if reasons is not None else [""] * len(self.paths)
        self.rows = None if rows is None else [int(r) for r in rows]
        super().__init__(self._message())

    def _message(self):
        if len(self.paths) == 1:
            reason = f": {self.reasons[0]}" if self.reasons[0] else ""
            return f"tile image {self.paths[0]!r} is not a readable image{reason}"
        named = "; ".join(f"{p!r} ({r})" if r else repr(p) for p, r in
                          zip(self.paths[:_NAMED_IN_MESSAGE], self.reasons))
        more = len(self.paths) - _NAMED_IN_MESSAGE
        return (f"{len(self.paths)} tiles are not readable images: {named}"
                + (f" and {more} more" if more > 0 else ""))

    def __reduce__(self):
        # Rebuilt from its fields, so that it crosses joblib's worker processes intact.
        return type(self), (self.paths, self.reasons, self.rows)


class ModelFileError(ValueError):
    """A model file that is not a valid ``.hiercls`` file, or was altered."""


class SlideReadError(OSError):
    """A slide file that exists but cannot be read (unsupported format, corrupt data)."""


class CommandError(Exception):
    """A problem with a command's inputs, reported on one line with exit status 2."""


# --- warnings ----------------------------------------------------------------------------

class UndefinedMetricWarning(_SklearnUndefinedMetricWarning):
    """A metric is undefined on the given labels (e.g. a class is absent) and is NaN.

    A subclass of :class:`sklearn.exceptions.UndefinedMetricWarning`, so filters on
    scikit-learn's category catch it too.
    """


class TileSizeWarning(UserWarning):
    """Tiles that declare no resolution differ in size from the training tiles."""


class ResolutionUnknownWarning(UserWarning):
    """Tiles declare a resolution, but the model was trained without knowing its own."""


class ResolutionMismatchWarning(UserWarning):
    """Slide tiles asked for at another resolution or side than the model was trained on."""


class RadiomicsMaskWarning(UserWarning):
    """Some tiles had a degenerate thresholded mask and were described by the whole tile."""


class StainNormalizationWarning(UserWarning):
    """Tiles the method could not normalize (no tissue, a blank tile), passed unchanged."""


class FewPatientsWarning(UserWarning):
    """Too few held-out patients for an error margin to reach the coverage asked for."""


class UncalibratedNecrosisWarning(UserWarning):
    """A necrotic fraction asked for with ``method="auto"`` but estimated without a
    calibration set, from expected counts that carry the training class mix."""


class SingularAdjustmentError(ValueError):
    """The calibration set cannot support a quantification method's adjustment: a class is
    missing from it, or the classifier's rates for two classes are (nearly) the same, so
    that the misclassification matrix has no usable inverse."""


class RandomFrozenBackboneWarning(UserWarning):
    """``freeze_backbone=True`` without ``pretrained`` weights: the image branch is a fixed
    random network, which learns nothing from the images (a baseline at best)."""
