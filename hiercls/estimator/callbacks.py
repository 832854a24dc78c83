"""skorch callbacks specific to the hierarchical model."""

from copy import deepcopy

import numpy as np
from skorch.callbacks import Callback, EarlyStopping, EpochScoring

from ..data.labels import encode_labels


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


class EarlyStoppingWithLoss(EarlyStopping):
    """skorch's :class:`~skorch.callbacks.EarlyStopping` that also restores the loss's state.

    With ``load_best=True`` skorch restores the module's weights only; the hierarchical
    loss holds learned parameters too (the log-variances behind ``task_weights_``), and
    the best epoch's validation loss was computed with the best epoch's values of them.
    This callback keeps and restores both, so the restored model is the best epoch's.
    """

    def on_train_begin(self, net, **kwargs):
        super().on_train_begin(net, **kwargs)
        self.best_criterion_state_ = None

    def on_epoch_end(self, net, **kwargs):
        super().on_epoch_end(net, **kwargs)
        if self.load_best and self.best_epoch_ == net.history[-1, "epoch"]:
            self.best_criterion_state_ = deepcopy(net.criterion_.state_dict())

    def on_train_end(self, net, **kwargs):
        restore = (self.load_best and self.best_epoch_ != net.history[-1, "epoch"]
                   and self.best_criterion_state_ is not None)
        super().on_train_end(net, **kwargs)
        if restore:
            net.criterion_.load_state_dict(self.best_criterion_state_)

    def __getstate__(self):
        state = super().__getstate__()
        state["best_criterion_state_"] = None
        return state
