"""The training criteria: the hierarchical two-head loss with learned task weights, and
the flat 3-class ablation."""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.labels import tumor_target, viable_target


def inverse_frequency_weights(targets, n_classes):
    """Per-class weights proportional to 1 / count, normalized to unit mean.

    Classes absent from ``targets`` get weight 0 (they contribute no samples), and the
    mean is taken over the present classes.

    >>> inverse_frequency_weights([0, 0, 0, 1], 2)
    array([0.5, 1.5])
    """
    counts = np.bincount(np.asarray(targets, dtype=np.int64), minlength=n_classes).astype(float)
    weights = np.zeros(n_classes)
    present = counts > 0
    weights[present] = 1.0 / counts[present]
    return weights / weights[present].mean()


class HierarchicalLoss(nn.Module):
    """exp(-lA) LA + exp(-lB) LB + eta (lA + lB), with lA and lB learned.

    LA is head A's class-weighted cross-entropy (tumor vs non-tumor) averaged over all
    samples of the batch; LB is head B's (viable vs non-viable) averaged over the tumor
    samples only. The log-variances lA and lB (Kendall et al., homoscedastic
    uncertainty) are parameters of this module, so skorch's optimizer learns them.
    A batch without tumor samples has no LB: its whole B term, eta * lB included, is left
    out, so lB receives no gradient from it and the loss stays finite.

    Parameters
    ----------
    tumor_weight : sequence of 2 floats, optional
        Class weights of head A (non-tumor, tumor); ones when omitted.
    viable_weight : sequence of 2 floats, optional
        Class weights of head B (non-viable, viable); ones when omitted.
    eta : float, default=0.2
        Weight of the log-variance regularizer.
    """

    def __init__(self, tumor_weight=None, viable_weight=None, eta=0.2):
        super().__init__()
        self.eta = eta
        self.register_buffer("tumor_weight", torch.as_tensor(
            np.ones(2) if tumor_weight is None else tumor_weight, dtype=torch.float32))
        self.register_buffer("viable_weight", torch.as_tensor(
            np.ones(2) if viable_weight is None else viable_weight, dtype=torch.float32))
        self.log_var_tumor = nn.Parameter(torch.zeros(()))
        self.log_var_viable = nn.Parameter(torch.zeros(()))

    def head_losses(self, logits, y):
        """(LA, LB) for a batch; LB is None when the batch has no tumor sample."""
        tumor = tumor_target(y)
        loss_tumor = F.cross_entropy(logits[:, :2], tumor, weight=self.tumor_weight,
                                     reduction="none").mean()
        is_tumor = tumor.bool()
        if not bool(is_tumor.any()):
            return loss_tumor, None
        viable = viable_target(y[is_tumor])
        loss_viable = F.cross_entropy(logits[is_tumor, 2:], viable, weight=self.viable_weight,
                                      reduction="none").mean()
        return loss_tumor, loss_viable

    def forward(self, logits, y):
        loss_tumor, loss_viable = self.head_losses(logits, y)
        total = torch.exp(-self.log_var_tumor) * loss_tumor + self.eta * self.log_var_tumor
        if loss_viable is not None:
            total = total + torch.exp(-self.log_var_viable) * loss_viable + self.eta * self.log_var_viable
        return total

    def task_weights(self):
        """(exp(-lA), exp(-lB)) as floats."""
        with torch.no_grad():
            return (float(torch.exp(-self.log_var_tumor)), float(torch.exp(-self.log_var_viable)))


class FlatLoss(nn.Module):
    """The ablation's loss: class-weighted 3-class cross-entropy, averaged over samples.

    Parameters
    ----------
    class_weight : sequence of 3 floats, optional
        Ones when omitted.
    """

    def __init__(self, class_weight=None):
        super().__init__()
        self.register_buffer("class_weight", torch.as_tensor(
            np.ones(3) if class_weight is None else class_weight, dtype=torch.float32))

    def forward(self, logits, y):
        return F.cross_entropy(logits, y, weight=self.class_weight, reduction="none").mean()
