"""The one check of a number given as a parameter or argument, and of a group per tile.

``isinstance(x, numbers.Real)`` takes ``True`` for 1 and lets NaN through every bound;
:func:`check_number` refuses both, and names the input and what was expected.
:func:`check_groups` turns one group (patient, slide) per tile into integer codes.
"""

import math
import numbers

import numpy as np
import pandas as pd

from .exceptions import InvalidParameterError


def describe_expected(*, integer, low, high, closed, options, none):
    kind = "an int" if integer else "a number"
    if options is not None:
        text = f"one of {sorted(options)}"
    elif low is not None and high is not None:
        left = "[" if closed in ("both", "left") else "("
        right = "]" if closed in ("both", "right") else ")"
        text = f"{kind} in {left}{low}, {high}{right}"
    elif low is not None:
        text = f"{kind} {'>=' if closed in ('both', 'left') else '>'} {low}"
    elif high is not None:
        text = f"{kind} {'<=' if closed in ('both', 'right') else '<'} {high}"
    else:
        text = kind
    return f"None or {text}" if none else text


def check_number(value, name, *, integer=False, low=None, high=None, closed="both",
                 options=None, none=False, expected=None):
    """Check that ``value`` is a number within bounds and return it as int or float.

    Parameters
    ----------
    value : object
        What was given.
    name : str
        The input's name, for the message.
    integer : bool, default=False
        Require an integral number (an ``int`` or numpy integer).
    low, high : number or None, default=None
        Bounds; None is unbounded on that side.
    closed : {"both", "left", "right", "neither"}, default="both"
        Which bounds are included.
    options : collection of numbers or None, default=None
        The only values allowed.
    none : bool, default=False
        Accept None (returned as is).
    expected : str or None, default=None
        What the message says was expected; None describes the checks above.

    Returns
    -------
    number : int, float or None

    Raises
    ------
    InvalidParameterError
        A ``ValueError`` and ``TypeError`` saying ``"<name> must be <expected>; got ..."``
        for a bool, NaN, infinity, a non-number, or a number out of range.

    Examples
    --------
    >>> from hiercls.validation import check_number
    >>> check_number(3, "n", integer=True, low=1)
    3
    >>> check_number(True, "n", integer=True, low=1)
    Traceback (most recent call last):
    ...
    hiercls.exceptions.InvalidParameterError: n must be an int >= 1; got bool True
    >>> check_number(float("nan"), "rate", low=0, high=1)
    Traceback (most recent call last):
    ...
    hiercls.exceptions.InvalidParameterError: rate must be a number in [0, 1]; got nan
    """
    if value is None and none:
        return None
    kind = numbers.Integral if integer else numbers.Real
    described = expected or describe_expected(integer=integer, low=low, high=high, closed=closed,
                                      options=options, none=none)
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, kind):
        if options is not None and expected is None:
            # The kind is what went wrong, not the choice among the options.
            described = (f"{'an int' if integer else 'a number'} in {sorted(options)}"
                         + (" or None" if none else ""))
        raise InvalidParameterError(
            f"{name} must be {described}; got {type(value).__name__} {value!r}")
    number = int(value) if integer else float(value)
    if not math.isfinite(number):
        raise InvalidParameterError(f"{name} must be {described}; got {value!r}")
    if options is not None and number not in options:
        raise InvalidParameterError(f"{name} must be {described}; got {value!r}")
    too_low = low is not None and (number < low if closed in ("both", "left") else number <= low)
    too_high = high is not None and (number > high if closed in ("both", "right")
                                     else number >= high)
    if too_low or too_high:
        raise InvalidParameterError(f"{name} must be {described}; got {value!r}")
    return number


def check_groups(groups, n_rows, name="groups", unit="group"):
    """``groups``, one per tile, as integer codes 0..k-1 in sorted order, and the sorted values.

    ``unit`` names what a group is (``"patient"``, ``"slide"``) in the errors.

    Raises
    ------
    ValueError
        If ``groups`` is not one-dimensional with ``n_rows`` entries, or has missing values.
    """
    values = groups.to_numpy() if isinstance(groups, (pd.Series, pd.Index)) else np.asarray(groups)
    if values.ndim != 1:
        raise ValueError(f"{name} must hold one group ({unit}) per tile, one-dimensional; got "
                         f"shape {values.shape}")
    if values.shape[0] != n_rows:
        raise ValueError(f"{name} has {values.shape[0]} entries but there are {n_rows} tiles: "
                         f"{name} must hold one group ({unit}) per tile")
    codes, uniques = pd.factorize(values, sort=True)
    if (codes < 0).any():
        raise ValueError(f"{name} has missing values; expected a {unit} for every tile")
    return codes.astype(np.int64), uniques
