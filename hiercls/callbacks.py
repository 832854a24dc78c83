"""skorch callbacks specific to the hierarchical model."""

import numpy as np
from skorch.callbacks import Callback, EpochScoring

from .labels import encode_labels


def _accuracy(net, X, y):
    # skorch hands the batch targets (codes) to the scorer while predict answers in the
    # form of classes_, so compare codes with the argmax of the probabilities.
    return float(np.mean(net.predict_proba(X).argmax(axis=1) == encode_labels(y)[0]))


def validation_accuracy():
    """Accuracy on the internal validation split, whatever form the labels have."""
    return EpochScoring(_accuracy, name="valid_acc", lower_is_better=False)


class RecordTaskWeights(Callback):
    """Write the learned task weights exp(-lA) and exp(-lB) into each epoch's history.

    They appear as ``task_weight_tumor`` and ``task_weight_viable``, beside the losses,
    so their course over training can be plotted.
    """

    def on_epoch_end(self, net, **kwargs):
        task_weights = getattr(net.criterion_, "task_weights", None)
        if task_weights is None:
            return
        tumor, viable = task_weights()
        net.history.record("task_weight_tumor", tumor)
        net.history.record("task_weight_viable", viable)
