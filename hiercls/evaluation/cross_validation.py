"""Patient-level evaluation: grouped cross-validation with out-of-fold probabilities."""

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import Pipeline
from tqdm.auto import tqdm

from ..data.labels import CLASS_NAMES, encode_labels
from .metrics import paper_metrics


def cross_validate_by_patient(estimator, X, y, groups, *, cv=None, verbose=1):
    """Fit and score ``estimator`` with whole patients held out in each fold.

    Parameters
    ----------
    estimator : sklearn estimator with ``predict_proba``
        Usually :func:`hiercls.make_fusion_pipeline`'s Pipeline; cloned for every fold.
    X : DataFrame
    y : array-like of labels (codes or names)
    groups : array-like
        Patient of each tile.
    cv : splitter or None, default=None
        None is leave-one-patient-out (:class:`~sklearn.model_selection.GroupKFold`
        with as many folds as patients).
    verbose : int, default=1
        A progress bar over folds when > 0.

    Returns
    -------
    result : EvaluationResult
        ``scores``: one row per fold (index ``test_patients``), one column per metric of
        :func:`hiercls.evaluation.metrics.paper_metrics`, undefined figures NaN.
        ``predictions``: out-of-fold probabilities (columns named by class) with
        ``y_true``, ``patient``, ``fold`` and, for the fusion classifier, the gate weights
        ``gate_image`` and ``gate_radiomics``; indexed like ``X``.
        ``histories``: each fold's training history (list of per-epoch dicts), or None
        for an estimator without one.
    """
    groups = np.asarray(groups)
    codes, _ = encode_labels(y)
    cv = GroupKFold(n_splits=len(np.unique(groups))) if cv is None else cv
    splits = list(cv.split(X, codes, groups))
    rows, parts, histories = [], [], []
    for fold, (train, test) in enumerate(tqdm(splits, desc="folds", unit="fold", disable=not verbose)):
        model = clone(estimator)
        fit_params = _groups_parameter(model, groups[train])
        model.fit(X.iloc[train], _take(y, train), **fit_params)
        classifier = model.steps[-1][1] if isinstance(model, Pipeline) else model
        gates = None
        if hasattr(classifier, "predict_proba_and_gates"):
            # One pass of the network, and of the pipeline's transforms, for both.
            features = model[:-1].transform(X.iloc[test]) if isinstance(model, Pipeline) else X.iloc[test]
            proba, gates = classifier.predict_proba_and_gates(features)
        else:
            proba = model.predict_proba(X.iloc[test])
        patients = ", ".join(map(str, np.unique(groups[test])))
        rows.append({"test_patients": patients, **paper_metrics(codes[test], proba)})
        part = pd.DataFrame(proba, columns=list(CLASS_NAMES), index=X.index[test])
        part["y_true"] = np.asarray(CLASS_NAMES, dtype=object)[codes[test]]
        part["patient"] = groups[test]
        part["fold"] = fold
        if gates is not None:
            part["gate_image"] = gates["image"].to_numpy()
            part["gate_radiomics"] = gates["radiomics"].to_numpy()
        history = getattr(classifier, "history_", None)
        histories.append(None if history is None else [dict(epoch) for epoch in history])
        parts.append(part)
    scores = pd.DataFrame(rows).set_index("test_patients")
    predictions = pd.concat(parts).loc[X.index]
    return EvaluationResult(scores, predictions, histories)


@dataclass
class EvaluationResult:
    """What :func:`cross_validate_by_patient` measured."""

    scores: pd.DataFrame
    predictions: pd.DataFrame
    histories: list


def summarize_scores(scores):
    """Mean, standard deviation and number of folds where each metric is defined.

    Returns
    -------
    summary : DataFrame with index = metric and columns ``mean``, ``sd``, ``n_folds``.
    """
    return pd.DataFrame({
        "mean": scores.mean(skipna=True),
        "sd": scores.std(skipna=True, ddof=1),
        "n_folds": scores.notna().sum(),
    })


def _take(y, index):
    return y.iloc[index] if isinstance(y, pd.Series) else np.asarray(y)[index]


def _groups_parameter(model, groups):
    """Route the training patients to the classifier's fit, so its early-stopping split
    holds out whole patients too."""
    from ..estimator.classifier import HierarchicalFusionClassifier

    if isinstance(model, Pipeline) and isinstance(model.steps[-1][1], HierarchicalFusionClassifier):
        return {f"{model.steps[-1][0]}__groups": groups}
    if isinstance(model, HierarchicalFusionClassifier):
        return {"groups": groups}
    return {}
