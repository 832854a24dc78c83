"""How a model is scored on patients it has not seen, and the clinical answer.

- :mod:`~hiercls.evaluation.metrics`: the paper's metrics and scorers;
- :mod:`~hiercls.evaluation.cross_validation`: evaluation by patient
  (:func:`cross_validate_by_patient`, :class:`EvaluationResult`);
- :mod:`~hiercls.evaluation.quantification`: class prevalences of a bag of tiles under
  label shift (QuaPy's quantifiers, their calibration set and the criterion);
- :mod:`~hiercls.evaluation.necrosis`: the necrotic fraction of each patient's tumor;
- :mod:`~hiercls.evaluation.calibration`: temperature scaling of the probabilities.
"""

from .cross_validation import EvaluationResult, cross_validate_by_patient, summarize_scores

__all__ = ["EvaluationResult", "cross_validate_by_patient", "summarize_scores"]
