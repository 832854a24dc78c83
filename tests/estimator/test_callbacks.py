import pickle
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from skorch.callbacks import EpochScoring
from skorch.history import History

from hiercls.estimator.callbacks import EarlyStoppingWithLoss, RecordTaskWeights, _accuracy, validation_accuracy
from hiercls.nn.loss import FlatLoss, HierarchicalLoss

CLASS_NAMES = ("Non-Tumor", "Non-Viable-Tumor", "Viable-Tumor")


class FixedProba:
    """A net whose predict_proba returns fixed rows."""

    def __init__(self, proba):
        self.proba = np.asarray(proba, dtype=float)

    def predict_proba(self, X):
        return self.proba


def test_accuracy_compares_codes_whatever_form_the_labels_have():
    net = FixedProba([[0.8, 0.1, 0.1], [0.1, 0.2, 0.7], [0.2, 0.5, 0.3], [0.6, 0.3, 0.1]])
    codes = np.array([0, 2, 2, 0])  # three of four right
    assert _accuracy(net, None, codes) == 0.75
    names = np.array(CLASS_NAMES, dtype=object)[codes]
    assert _accuracy(net, None, names) == 0.75
    assert _accuracy(net, None, torch.as_tensor(codes)) == 0.75


def test_validation_accuracy_is_a_higher_is_better_epoch_score_on_validation():
    scoring = validation_accuracy()
    assert isinstance(scoring, EpochScoring)
    assert scoring.name == "valid_acc"
    assert scoring.lower_is_better is False and scoring.on_train is False
    assert scoring.scoring is _accuracy


def _epoch(net, number, **values):
    net.history.new_epoch()
    net.history.record("epoch", number)
    for key, value in values.items():
        net.history.record(key, value)


def test_record_task_weights_writes_the_learned_weights_into_the_history():
    criterion = HierarchicalLoss()
    with torch.no_grad():
        criterion.log_var_tumor.fill_(0.5)
        criterion.log_var_viable.fill_(-1.0)
    net = SimpleNamespace(history=History(), criterion_=criterion)
    _epoch(net, 1)
    RecordTaskWeights().on_epoch_end(net)
    np.testing.assert_allclose(net.history[-1, "task_weight_tumor"], np.exp(-0.5), rtol=1e-6)
    np.testing.assert_allclose(net.history[-1, "task_weight_viable"], np.exp(1.0), rtol=1e-6)


def test_record_task_weights_records_nothing_for_a_flat_loss():
    net = SimpleNamespace(history=History(), criterion_=FlatLoss())
    _epoch(net, 1)
    RecordTaskWeights().on_epoch_end(net)
    assert "task_weight_tumor" not in net.history[-1]


def _training(callback, losses, net=None):
    """Drive the callback through epochs with the given validation losses; in epoch i
    the module's weight and the loss's log-variance are set to i."""
    net = net or SimpleNamespace(history=History(), module_=torch.nn.Linear(1, 1, bias=False),
                                 criterion_=HierarchicalLoss(), verbose=0)
    callback.on_train_begin(net)
    for number, loss in enumerate(losses, start=1):
        with torch.no_grad():
            net.module_.weight.fill_(number)
            net.criterion_.log_var_tumor.fill_(number)
        _epoch(net, number, valid_loss=loss)
        try:
            callback.on_epoch_end(net)
        except KeyboardInterrupt:
            break
    callback.on_train_end(net)
    return net


def test_early_stopping_restores_the_best_epochs_loss_state_with_the_network():
    net = _training(EarlyStoppingWithLoss(patience=5, load_best=True, sink=lambda *a, **k: None),
                    [1.0, 0.5, 0.7, 0.8])
    assert net.module_.weight.detach().item() == 2.0
    assert net.criterion_.log_var_tumor.detach().item() == 2.0


def test_early_stopping_interrupted_by_patience_still_restores_the_loss_state():
    callback = EarlyStoppingWithLoss(patience=2, load_best=True, sink=lambda *a, **k: None)
    net = _training(callback, [1.0, 0.4, 0.6, 0.7, 0.1])
    assert len(net.history) == 4  # stopped after two epochs without progress
    assert net.module_.weight.detach().item() == 2.0
    assert net.criterion_.log_var_tumor.detach().item() == 2.0


def test_early_stopping_keeps_the_last_state_when_the_last_epoch_is_best():
    net = _training(EarlyStoppingWithLoss(patience=5, load_best=True), [1.0, 0.9, 0.5])
    assert net.criterion_.log_var_tumor.detach().item() == 3.0


def test_early_stopping_without_load_best_restores_nothing():
    net = _training(EarlyStoppingWithLoss(patience=5, load_best=False), [1.0, 0.5, 0.7])
    assert net.module_.weight.detach().item() == 3.0
    assert net.criterion_.log_var_tumor.detach().item() == 3.0


def test_pickled_early_stopping_leaves_the_saved_states_behind():
    callback = EarlyStoppingWithLoss(patience=5, load_best=True)
    net = SimpleNamespace(history=History(), module_=torch.nn.Linear(1, 1, bias=False),
                          criterion_=HierarchicalLoss(), verbose=0)
    callback.on_train_begin(net)
    _epoch(net, 1, valid_loss=1.0)
    callback.on_epoch_end(net)
    assert callback.best_criterion_state_ is not None
    restored = pickle.loads(pickle.dumps(callback))
    assert restored.best_criterion_state_ is None and restored.best_model_weights_ is None
    assert callback.best_criterion_state_ is not None  # the live callback keeps its own
    assert restored.patience == 5 and restored.load_best is True


@pytest.mark.parametrize("loss", [HierarchicalLoss, FlatLoss])
def test_early_stopping_state_is_a_copy_not_the_live_tensors(loss):
    callback = EarlyStoppingWithLoss(patience=5, load_best=True)
    criterion = loss()
    net = SimpleNamespace(history=History(), module_=torch.nn.Linear(1, 1, bias=False),
                          criterion_=criterion, verbose=0)
    callback.on_train_begin(net)
    _epoch(net, 1, valid_loss=1.0)
    callback.on_epoch_end(net)
    saved = {key: value.clone() for key, value in callback.best_criterion_state_.items()}
    with torch.no_grad():
        for value in criterion.state_dict().values():
            value.add_(1.0)
    for key, value in callback.best_criterion_state_.items():
        torch.testing.assert_close(value, saved[key])
