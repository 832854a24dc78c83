"""Patient-level evaluation: grouped cross-validation with out-of-fold probabilities."""

import inspect
import json
import numbers
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import get_config
from sklearn.model_selection import GroupKFold, cross_validate
from sklearn.pipeline import Pipeline
from sklearn.utils import check_scalar
from tqdm.auto import tqdm

from ..data.labels import CLASS_NAMES, encode_labels
from .metrics import paper_metrics


def cross_validate_by_patient(estimator, X, y, groups, *, cv=None, verbose=1):
    """Fit and score ``estimator`` with whole patients held out in each fold.

    Built on :func:`sklearn.model_selection.cross_validate`: the splitter gets ``groups``,
    and so does the estimator's ``fit`` (cut to the fold's training patients, so that an
    early-stopping split holds out whole patients too) where it takes them: as
    ``<last step>__groups`` of a Pipeline whose final estimator's ``fit`` has a ``groups``
    parameter, as ``groups`` of such an estimator itself, or, with scikit-learn's metadata
    routing enabled, wherever ``set_fit_request(groups=True)`` asked for them. Each
    fold's test tiles go through the fitted pipeline once, for both the probabilities
    and (for an estimator with ``predict_proba_and_gates``) the gate weights. Every fold
    fits the whole pipeline; its radiomics and frozen backbone features are cached on disk
    by default (the steps' ``cache="auto"``), so the folds after the first read them
    instead of computing them again.

    Parameters
    ----------
    estimator : sklearn estimator with ``predict_proba``
        Usually :func:`hiercls.make_fusion_pipeline`'s Pipeline; cloned for every fold.
    X : DataFrame
    y : array-like of labels (codes or names)
    groups : array-like
        Patient of each tile.
    cv : int, splitter or None, default=None
        None is leave-one-patient-out (:class:`~sklearn.model_selection.GroupKFold`
        with as many folds as patients); an int is ``GroupKFold(n_splits=cv)``.
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

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from sklearn.linear_model import LogisticRegression
    >>> from hiercls.evaluation.cross_validation import cross_validate_by_patient
    >>> rng = np.random.default_rng(0)
    >>> X = pd.DataFrame(rng.normal(size=(60, 2)))
    >>> y = np.tile([0, 1, 2], 20)
    >>> X[0] += y
    >>> result = cross_validate_by_patient(LogisticRegression(), X, y, np.repeat(["a", "b", "c"], 20),
    ...                                    verbose=0)
    >>> sorted(result.scores.index), result.predictions["fold"].nunique()
    (['a', 'b', 'c'], 3)
    """
    check_scalar(verbose, "verbose", numbers.Integral, min_val=0)
    groups = np.asarray(groups)
    codes, _ = encode_labels(y)
    if cv is None:
        cv = GroupKFold(n_splits=len(np.unique(groups)))
    elif isinstance(cv, numbers.Integral) and not isinstance(cv, bool):
        cv = GroupKFold(n_splits=check_scalar(cv, "cv", numbers.Integral, min_val=2))
    if get_config()["enable_metadata_routing"]:
        # sklearn routes groups to the splitter and to whichever fit requested them.
        split_groups, params = None, {"groups": groups}
    else:
        split_groups, params = groups, _fit_groups(estimator, groups)
    n_folds = cv.get_n_splits(X, codes, groups)
    with tqdm(total=n_folds, desc="folds", unit="fold", disable=not verbose) as progress:
        scorer = _OutOfFold(progress)
        result = cross_validate(
            estimator, X, y, groups=split_groups, cv=cv, scoring=scorer, params=params,
            return_estimator=True, return_indices=True, error_score="raise",
        )
    rows, parts, histories = [], [], []
    for fold, (model, test) in enumerate(zip(result["estimator"], result["indices"]["test"])):
        proba, gates, metrics = scorer.outputs[id(model)]
        patients = ", ".join(map(str, np.unique(groups[test])))
        rows.append({"test_patients": patients, **metrics})
        part = pd.DataFrame(proba, columns=list(CLASS_NAMES), index=X.index[test])
        part["y_true"] = np.asarray(CLASS_NAMES, dtype=object)[codes[test]]
        part["patient"] = groups[test]
        part["fold"] = fold
        if gates is not None:
            part["gate_image"] = gates["image"].to_numpy()
            part["gate_radiomics"] = gates["radiomics"].to_numpy()
        history = getattr(_final_estimator(model), "history_", None)
        histories.append(None if history is None else [dict(epoch) for epoch in history])
        parts.append(part)
    scores = pd.DataFrame(rows).set_index("test_patients")
    predictions = pd.concat(parts).loc[X.index]
    return EvaluationResult(scores, predictions, histories)


@dataclass
class EvaluationResult:
    """What :func:`cross_validate_by_patient` measured, and how it is saved to a folder.

    Attributes
    ----------
    scores : DataFrame
        One row per fold (index ``test_patients``), one column per metric.
    predictions : DataFrame
        Out-of-fold probabilities (one column per class), ``y_true``, ``patient``,
        ``fold`` and, where known, ``gate_image``, ``gate_radiomics``; other columns (such
        as a leading ``image``) are kept by :meth:`save` and :meth:`load`.
    histories : list
        Each fold's training history (a list of per-epoch dicts), or None per fold.
    metadata : dict or None, default=None
        Settings of the run (JSON values), saved as ``run.json``.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> import pandas as pd
    >>> from sklearn.linear_model import LogisticRegression
    >>> rng = np.random.default_rng(0)
    >>> X = pd.DataFrame(rng.normal(size=(12, 2)), columns=["a", "b"])
    >>> y = np.tile([0, 1, 2], 4)
    >>> groups = np.repeat(["p1", "p2", "p3"], 4)
    >>> result = cross_validate_by_patient(LogisticRegression(), X, y, groups, verbose=0)
    >>> folder = tempfile.mkdtemp()
    >>> result.save(folder)
    >>> again = EvaluationResult.load(folder)
    >>> np.allclose(again.scores, result.scores, equal_nan=True)
    True
    """

    scores: pd.DataFrame
    predictions: pd.DataFrame
    histories: list
    metadata: dict = None

    #: The files :meth:`save` writes and :meth:`load` reads (``hiercls evaluate``'s).
    FILES = ("metrics.csv", "metrics_summary.csv", "predictions.csv", "histories.json",
             "run.json")

    def save(self, folder):
        """Write the result to ``folder`` (created if needed; its files overwritten).

        Files:

        - ``metrics.csv``: one row per fold, columns ``fold``, ``test_patients`` and the
          metrics, empty where a figure is undefined;
        - ``metrics_summary.csv``: one row per metric (``metric``) with ``mean``, ``sd``
          and ``n_folds`` (:func:`summarize_scores`);
        - ``predictions.csv``: the predictions, a ``predicted`` column (the most probable
          class) after the class columns, without the index;
        - ``histories.json``: each fold's per-epoch record (per-batch records left out);
        - ``run.json``: :attr:`metadata`, when it is not None.

        Parameters
        ----------
        folder : str or path-like

        Returns
        -------
        None
        """
        folder = Path(folder).expanduser()
        folder.mkdir(parents=True, exist_ok=True)
        per_fold = self.scores.reset_index()
        per_fold.insert(0, "fold", range(len(per_fold)))
        per_fold.to_csv(folder / "metrics.csv", index=False)
        summarize_scores(self.scores).rename_axis("metric").to_csv(folder / "metrics_summary.csv")
        _with_predicted(self.predictions).to_csv(folder / "predictions.csv", index=False)
        histories = [None] * len(self.scores) if self.histories is None else self.histories
        (folder / "histories.json").write_text(json.dumps(_plain_histories(histories), indent=1))
        if self.metadata is not None:
            (folder / "run.json").write_text(json.dumps(_plain(self.metadata), indent=1))

    @classmethod
    def load(cls, folder):
        """Read a result written by :meth:`save` (or by ``hiercls evaluate``).

        Nothing is scored again: the scores are those of ``metrics.csv``.

        Parameters
        ----------
        folder : str or path-like
            The folder, or its ``predictions.csv`` (then ``metrics.csv`` and the others
            are read beside it). ``histories.json`` and ``run.json`` are optional:
            without them, ``histories`` is None for every fold and ``metadata`` None.

        Returns
        -------
        result : EvaluationResult
            ``predictions`` without the derived ``predicted`` column, indexed from 0.

        Raises
        ------
        FileNotFoundError
            If ``predictions.csv`` or ``metrics.csv`` is missing.
        ValueError
            If one of the files is unreadable or lacks the columns :meth:`save` writes;
            the message names the file.
        """
        source = Path(folder).expanduser()
        folder = source if source.is_dir() else source.parent
        predictions_file = source / "predictions.csv" if source.is_dir() else source
        predictions = _read_table(predictions_file, (*CLASS_NAMES, "y_true", "patient", "fold"),
                                  dtype={"patient": str})
        encode_labels(predictions["y_true"], name=f"{str(predictions_file)!r} column 'y_true'")
        predictions = predictions.drop(columns="predicted", errors="ignore")
        metrics = _read_table(folder / "metrics.csv", ("fold", "test_patients"),
                              dtype={"test_patients": str})
        scores = metrics.drop(columns="fold").set_index("test_patients")
        histories_file = folder / "histories.json"
        histories = json.loads(histories_file.read_text()) if histories_file.is_file() else None
        if not isinstance(histories, list) or len(histories) != len(scores):
            histories = [None] * len(scores)
        metadata_file = folder / "run.json"
        metadata = json.loads(metadata_file.read_text()) if metadata_file.is_file() else None
        return cls(scores, predictions, histories, metadata)


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


def _final_estimator(model):
    return model.steps[-1][1] if isinstance(model, Pipeline) else model


def _fit_groups(estimator, groups):
    """The fit parameter that hands ``estimator`` the patients, by the name its ``fit``
    takes them under (``<step>__groups`` down nested Pipelines); none when it takes none."""
    if isinstance(estimator, Pipeline):
        name, last = estimator.steps[-1]
        return {f"{name}__{key}": value for key, value in _fit_groups(last, groups).items()}
    fit = getattr(estimator, "fit", None)
    if fit is not None and "groups" in inspect.signature(fit).parameters:
        return {"groups": groups}
    return {}


def _read_table(path, required, dtype=None):
    """A CSV file of a saved result, checked for the columns :meth:`EvaluationResult.save` writes."""
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r} does not exist; expected the file "
                                "EvaluationResult.save ('hiercls evaluate') writes")
    try:
        table = pd.read_csv(path, dtype=dtype)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError, OSError) as error:
        raise ValueError(f"{str(path)!r} is not a readable CSV file: "
                         f"{' '.join(str(error).split())}") from None
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise ValueError(f"{str(path)!r} lacks the column(s) {', '.join(map(repr, missing))}; "
                         f"expected the {path.name} of 'hiercls evaluate'")
    return table


def _with_predicted(predictions):
    """The predictions with the most probable class after the class columns."""
    table = predictions.copy()
    proba = table[list(CLASS_NAMES)].to_numpy()
    table.insert(table.columns.get_loc(CLASS_NAMES[-1]) + 1, "predicted",
                 np.asarray(CLASS_NAMES, dtype=object)[proba.argmax(axis=1)])
    return table


def _plain(value):
    """``value`` with numpy scalars and arrays (and 0-d tensors) as JSON values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    item = getattr(value, "item", None)  # a 0-d tensor
    return item() if callable(item) else str(value)


def _plain_histories(histories):
    """Per-epoch records as JSON-ready dicts (the per-batch records left out)."""
    return [None if history is None else
            [{k: _plain(v) for k, v in epoch.items() if k != "batches"} for epoch in history]
            for history in histories]

def _proba_and_gates(model, X):
    """Probabilities and gate weights (None without a gate) from one pass over ``X``."""
    classifier = _final_estimator(model)
    if not hasattr(classifier, "predict_proba_and_gates"):
        return model.predict_proba(X), None
    features = model[:-1].transform(X) if isinstance(model, Pipeline) else X
    return classifier.predict_proba_and_gates(features)


class _OutOfFold:
    """The scorer handed to ``cross_validate``: it predicts each fold's test tiles once and
    keeps what it predicted (by fitted model) besides returning the fold's metrics.

    ``cross_validate`` runs the folds in this process (``n_jobs=None``) and returns the
    very models it scored, which is what makes the keyed store reliable.
    """

    def __init__(self, progress):
        self.progress = progress
        self.outputs = {}

    def __call__(self, model, X_test, y_test):
        proba, gates = _proba_and_gates(model, X_test)
        metrics = paper_metrics(y_test, proba)
        self.outputs[id(model)] = (proba, gates, metrics)
        self.progress.update(1)
        return metrics
