"""Radiomic features of a tile: channel, region, the two backends, and the transformer."""

from .names import FEATURE_NAMES, FIRSTORDER_FEATURES, RADIOMIC_COLUMN_PATTERN, SHAPE2D_FEATURES
from .transformer import RadiomicsMaskWarning, RadiomicsTransformer

__all__ = [
    "FEATURE_NAMES",
    "FIRSTORDER_FEATURES",
    "SHAPE2D_FEATURES",
    "RADIOMIC_COLUMN_PATTERN",
    "RadiomicsMaskWarning",
    "RadiomicsTransformer",
]
