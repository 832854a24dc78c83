import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hiercls.nn.loss import FlatLoss, HierarchicalLoss, inverse_frequency_weights


def _ce(logits, target):
    return -math.log(math.exp(logits[target]) / sum(math.exp(v) for v in logits))


def test_inverse_frequency_weights_are_inverse_counts_with_unit_mean():
    weights = inverse_frequency_weights([0, 0, 0, 1, 2, 2], 3)
    expected = np.array([1 / 3, 1.0, 1 / 2])
    np.testing.assert_allclose(weights, expected / expected.mean())
    assert weights.mean() == pytest.approx(1.0)


def test_inverse_frequency_weights_give_absent_class_zero_weight():
    weights = inverse_frequency_weights([0, 0, 2], 3)
    assert weights[1] == 0.0
    assert weights[[0, 2]].mean() == pytest.approx(1.0)


def test_hierarchical_loss_matches_hand_computation():
    logits = torch.tensor([[2.0, 0.0, 0.5, -0.5],   # y = 0: only head A counts
                           [0.0, 1.0, 1.0, 0.0],    # y = 1: non-viable tumor
                           [-1.0, 1.0, 0.0, 2.0]])  # y = 2: viable tumor
    y = torch.tensor([0, 1, 2])
    w_tumor, w_viable, eta = [0.5, 1.5], [1.2, 0.8], 0.2
    loss = HierarchicalLoss(tumor_weight=w_tumor, viable_weight=w_viable, eta=eta)
    with torch.no_grad():
        loss.log_var_tumor.fill_(0.3)
        loss.log_var_viable.fill_(-0.4)
    rows = logits.tolist()
    loss_a = (w_tumor[0] * _ce(rows[0][:2], 0) + w_tumor[1] * _ce(rows[1][:2], 1)
              + w_tumor[1] * _ce(rows[2][:2], 1)) / 3
    loss_b = (w_viable[0] * _ce(rows[1][2:], 0) + w_viable[1] * _ce(rows[2][2:], 1)) / 2
    expected = math.exp(-0.3) * loss_a + math.exp(0.4) * loss_b + eta * (0.3 - 0.4)
    assert float(loss(logits, y).detach()) == pytest.approx(expected, rel=1e-6)


def test_tumor_free_batch_skips_head_b_and_stays_finite():
    loss = HierarchicalLoss(eta=0.2)
    logits = torch.randn(4, 4, requires_grad=True)
    y = torch.zeros(4, dtype=torch.long)
    value = loss(logits, y)
    assert torch.isfinite(value)
    expected = F.cross_entropy(logits[:, :2], torch.zeros(4, dtype=torch.long))
    assert float(value.detach()) == pytest.approx(float(expected.detach()))
    value.backward()
    assert loss.log_var_viable.grad is None or float(loss.log_var_viable.grad) == 0.0
    assert float(logits.grad[:, 2:].abs().sum()) == 0.0


def test_log_variances_are_learnable_parameters():
    loss = HierarchicalLoss()
    names = {name for name, _ in loss.named_parameters()}
    assert names == {"log_var_tumor", "log_var_viable"}
    assert loss.task_weights() == (1.0, 1.0)


def test_flat_loss_is_weighted_cross_entropy_averaged_over_samples():
    logits = torch.tensor([[1.0, 0.0, -1.0], [0.0, 2.0, 0.0]])
    y = torch.tensor([0, 1])
    weights = [0.5, 2.0, 0.5]
    expected = (0.5 * _ce([1.0, 0.0, -1.0], 0) + 2.0 * _ce([0.0, 2.0, 0.0], 1)) / 2
    assert float(FlatLoss(class_weight=weights)(logits, y)) == pytest.approx(expected, rel=1e-6)
