"""skorch callbacks specific to the hierarchical model."""

from skorch.callbacks import Callback


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
