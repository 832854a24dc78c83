"""Class prevalences of a bag of tiles under label shift: quantification, through QuaPy.

A patient's necrotic fraction is a *prevalence*, ``NV / (NV + V)`` of the three-class
prevalences of its tiles, not a property of any one tile. A classifier trained on other
patients carries their class mix: summing its probabilities (``"pcc"``, the expected
counts of :mod:`~hiercls.evaluation.necrosis`) or its votes (``"cc"``) pulls every
estimate towards that mix. *Quantification* corrects for it, from how the classifier
behaves on tiles it did not see (out-of-fold predictions of the training tiles, the
*calibration* set):

- ``"acc"`` (adjusted classify and count) and ``"pacc"`` (its probabilistic form) invert
  the matrix of misclassification rates ``P(prediction | class)``;
- ``"emq"`` (the EM prior adjustment of Saerens, Latinne and Decaestecker, 2002) reweighs
  the posteriors until the prior they imply is stable (it needs calibrated posteriors);
- ``"dmy"`` and ``"kdey"`` match the bag's distribution of posteriors with a mixture of
  the classes' calibration distributions (histograms; kernel densities).

All of them assume that a class looks the same in the new bag as in the calibration set
(label shift). Where tiles of a new patient look unlike the training patients' tiles of
the same class, no adjustment recovers the truth; ``benchmarks/necrosis.py`` measures how
far each method gets on unseen patients.

The methods are QuaPy's (:mod:`quapy.method.aggregative`), used through its public API on
the posteriors the pipeline already computed: :class:`PrevalenceQuantifier` hands them to
QuaPy through a pass-through classifier, so no model is refitted. :func:`out_of_fold_proba`
makes the calibration set, :func:`fit_quantifier` both steps at once, and
:func:`quantification_scores` is the criterion that chooses a method without the patients
to be predicted (leave-one-slide-out bags and the artificial prevalence protocol).
Where several models compete (the feature levers of ``benchmarks/necrosis.py``),
:func:`patient_shift` measures how far each one's representation gives the patient away
within a class (:func:`within_class_separability`: the label-shift assumption, checked
on the training patients), and :func:`choose_setting` chooses among them. Where a bag's
labels are known (a validation patient), :func:`rate_shift` shows how far its classes
depart from the calibration rates, which is what breaks an adjustment.

References: Forman, "Quantifying counts and costs via classification", Data Min. Knowl.
Disc. 17, 2008 (CC, ACC); Bella et al., "Quantification via probability estimators",
ICDM 2010 (PCC, PACC); Saerens, Latinne and Decaestecker, Neural Comput. 14, 2002 (EMQ);
Moreo, Esuli and Sebastiani, "QuaPy: a Python-based framework for quantification",
CIKM 2021.
"""

from ...exceptions import SingularAdjustmentError
from .quantifier import (
    ADJUSTED_METHODS,
    CALIBRATION_GROUPINGS,
    DEFAULT_METHOD,
    DEFAULT_RECALIBRATE,
    METHODS,
    RECALIBRATIONS,
    PrevalenceQuantifier,
    necrotic_fraction,
)
from .selection import (
    BASELINE,
    choose_setting,
    fit_quantifier,
    out_of_fold_proba,
    quantification_scores,
)
from .shift import patient_shift, rate_shift, within_class_separability

__all__ = [
    "ADJUSTED_METHODS",
    "BASELINE",
    "CALIBRATION_GROUPINGS",
    "DEFAULT_METHOD",
    "DEFAULT_RECALIBRATE",
    "METHODS",
    "RECALIBRATIONS",
    "PrevalenceQuantifier",
    "SingularAdjustmentError",
    "choose_setting",
    "fit_quantifier",
    "necrotic_fraction",
    "out_of_fold_proba",
    "patient_shift",
    "quantification_scores",
    "rate_shift",
    "within_class_separability",
]
