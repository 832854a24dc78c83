"""Percentage of necrosis per patient: the figure a pathologist reports after chemotherapy.

After neoadjuvant chemotherapy of osteosarcoma the pathologist estimates which fraction
of the tumor is necrotic (non-viable); a necrotic fraction of at least 90 % is a *good*
response, anything less a *poor* one. From tiles, the necrotic fraction of a patient is

    necrotic fraction = (necrotic tumor tiles) / (all tumor tiles),

with Non-Tumor tiles left out of both. This module estimates it from a classifier's
probabilities, with a bootstrap confidence interval over the patient's tiles, and
computes the same fraction from the pathologists' tile labels for comparison.

From probabilities the counts are *expected* counts: with ``P1`` and ``P2`` the
probabilities of Non-Viable-Tumor and Viable-Tumor,

    necrotic fraction = sum_i P1_i / sum_i (P1_i + P2_i),    viable fraction = 1 - that.

This uses the classifier's uncertainty instead of discarding it (an argmax count, also
given for comparison, turns a 0.51 into a whole tile).

A patient whose (expected) tumor tile count is below ``min_tumor_tiles`` (default 1) has
no fraction to speak of: its fractions and interval are NaN and its response is
``"no tumor"``. No division by (almost) zero takes place, so there is no warning either.

Three options address the two ways the default estimate fails on new patients (see
``docs/evaluation.md``, "Necrosis: the estimate and its interval"):

- ``tumor_threshold=t`` keeps only tiles whose ``P1 + P2 >= t``. A Non-Tumor tile scored
  ``(0.8, 0.1, 0.1)`` otherwise adds 0.1 necrotic and 0.1 viable tile to the counts; on a
  patient with many Non-Tumor tiles these strays pull every fraction towards 0.5. The price:
  tumor tiles the model doubts (``P1 + P2 < t``) are left out as well, which biases the
  fraction if the model doubts one tumor class more than the other.
- ``member_proba=`` (each seed's probabilities, from
  :meth:`hiercls.estimator.ensemble.SeedEnsemble.predict_proba_members`): every bootstrap
  replicate also draws a member, so the interval holds the model's training randomness
  as well as the sampling of tiles.
- ``error_margin=m`` (from :func:`necrosis_error_margin` on held-out patients) widens the
  interval to ``[low - m, high + m]``, clipped to [0, 1]: the model's systematic error,
  which neither the tiles nor the seeds reveal.
"""

from ...exceptions import FewPatientsWarning, UncalibratedNecrosisWarning
from .estimates import (
    FRACTIONS,
    GOOD_RESPONSE,
    MIN_TUMOR_TILES,
    NO_TUMOR,
    necrosis_from_probabilities,
    reference_necrosis,
)
from .reports import necrosis_error_margin, necrosis_from_evaluation, necrosis_report

__all__ = [
    "FRACTIONS",
    "FewPatientsWarning",
    "GOOD_RESPONSE",
    "MIN_TUMOR_TILES",
    "NO_TUMOR",
    "UncalibratedNecrosisWarning",
    "necrosis_from_evaluation",
    "necrosis_from_probabilities",
    "necrosis_error_margin",
    "necrosis_report",
    "reference_necrosis",
]
