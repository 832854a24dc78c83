import os
import pickle
import sys
import threading
import warnings

import numpy as np
import pytest
import skorch
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from skorch.callbacks import Callback

import hiercls
import hiercls.estimator.classifier
import hiercls.features.frozen
from hiercls import CLASS_NAMES, HierarchicalFusionClassifier
from hiercls.estimator.splits import GroupedValidSplit
from hiercls.features.radiomics.names import FEATURE_NAMES
from hiercls.nn.fusion import class_probabilities
from hiercls.nn.loss import FlatLoss, HierarchicalLoss

from ..conftest import TINY_CLASSIFIER


def tiny(**params):
    return HierarchicalFusionClassifier(**{**TINY_CLASSIFIER, **params})


@pytest.fixture(scope="module")
def fitted(synthetic):
    X, y, groups = synthetic
    return tiny(random_state=0).fit(X, y, groups=groups)


def test_predict_proba_has_three_columns_summing_to_one(fitted, synthetic):
    X, _, _ = synthetic
    proba = fitted.predict_proba(X)
    assert proba.shape == (len(X), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert (proba >= 0).all()


def test_predict_proba_is_the_factorization_of_the_two_heads(fitted, synthetic):
    X, _, _ = synthetic
    logits = torch.cat([output[0] for output in fitted.forward_iter(X)])
    p_a, p_b = logits[:, :2].softmax(1).numpy(), logits[:, 2:].softmax(1).numpy()
    expected = np.stack([p_a[:, 0], p_a[:, 1] * p_b[:, 0], p_a[:, 1] * p_b[:, 1]], axis=1)
    np.testing.assert_allclose(fitted.predict_proba(X), expected, rtol=1e-5, atol=1e-7)


def test_classes_keep_the_form_fit_saw(synthetic):
    X, y, _ = synthetic
    names = np.array(CLASS_NAMES, dtype=object)[y.to_numpy()]
    model = tiny(max_epochs=1).fit(X, names)
    assert list(model.classes_) == list(CLASS_NAMES)
    assert set(model.predict(X)) <= set(CLASS_NAMES)
    coded = tiny(max_epochs=1).fit(X, y)
    assert list(coded.classes_) == [0, 1, 2]
    assert set(coded.predict(X)) <= {0, 1, 2}


def test_classes_are_all_three_even_when_a_class_is_missing(synthetic):
    X, y, _ = synthetic
    keep = (y != 1).to_numpy()
    model = tiny(max_epochs=1).fit(X[keep], y[keep])
    assert list(model.classes_) == [0, 1, 2]
    assert model.class_weights_["viable"][0] == 0.0


def test_fitted_attributes_users_read(fitted, synthetic):
    X, y, _ = synthetic
    assert fitted.task_weights_.shape == (2,)
    # exp(-l) of the loss's learned log-variances, recorded after the last epoch, and
    # learned: they have moved from their initial value 1.
    log_vars = torch.stack([fitted.criterion_.log_var_tumor, fitted.criterion_.log_var_viable])
    np.testing.assert_allclose(fitted.task_weights_, torch.exp(-log_vars).detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(fitted.task_weights_, [fitted.history_[-1, "task_weight_tumor"],
                                                      fitted.history_[-1, "task_weight_viable"]])
    assert (fitted.task_weights_ != 1.0).all()
    counts = np.bincount((y != 0).astype(int))
    expected = (1 / counts) / (1 / counts).mean()
    np.testing.assert_allclose(fitted.class_weights_["tumor"], expected)
    assert len(fitted.history_) == TINY_CLASSIFIER["max_epochs"]
    assert {"train_loss", "valid_loss", "task_weight_tumor", "task_weight_viable"} <= set(fitted.history_[-1])
    assert fitted.history is fitted.history_


def test_gate_weights_are_one_row_per_tile_summing_to_one(fitted, synthetic):
    X, _, _ = synthetic
    gates = fitted.gate_weights(X)
    assert list(gates.columns) == ["image", "radiomics"]
    assert len(gates) == len(X)
    np.testing.assert_allclose(gates.sum(axis=1), 1.0, rtol=1e-6)


def test_embed_is_what_the_heads_read(fitted, synthetic):
    X, _, _ = synthetic
    z = fitted.embed(X)
    assert z.shape == (len(X), TINY_CLASSIFIER["embed_dim"]) and z.dtype == np.float32
    with torch.no_grad():
        proba = class_probabilities(fitted.module_.head(torch.from_numpy(z))).numpy()
    np.testing.assert_allclose(proba, fitted.predict_proba(X), rtol=1e-5, atol=1e-6)


def test_embed_of_the_radiomics_only_model_is_the_radiomic_embedding(synthetic):
    X, y, _ = synthetic
    radiomics = X.drop(columns="image")
    model = tiny(use_image=False, max_epochs=1).fit(radiomics, y)
    inputs = torch.tensor(radiomics[model.radiomic_columns_].to_numpy(), dtype=torch.float32)
    with torch.no_grad():
        expected = model.module_.radiomics_encoder(inputs).numpy()
    np.testing.assert_allclose(model.embed(radiomics), expected, rtol=1e-5, atol=1e-6)


def test_same_random_state_gives_identical_probabilities(synthetic):
    X, y, groups = synthetic
    first = tiny(random_state=7).fit(X, y, groups=groups).predict_proba(X)
    second = tiny(random_state=7).fit(X, y, groups=groups).predict_proba(X)
    np.testing.assert_array_equal(first, second)
    other = tiny(random_state=8).fit(X, y, groups=groups).predict_proba(X)
    assert not np.array_equal(first, other)


def test_fit_does_not_change_the_global_torch_random_state(synthetic):
    X, y, _ = synthetic
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tiny(max_epochs=1).fit(X, y)
    torch.testing.assert_close(torch.rand(3), expected)


def test_clone_get_params_and_set_params_round_trip(fitted, synthetic):
    X, y, groups = synthetic
    params = fitted.get_params(deep=False)
    assert params["device"] == "auto"
    assert params["backbone"] == "test_efficientnet"
    copy = clone(fitted)
    assert not hasattr(copy, "module_")
    copy.set_params(**copy.get_params(deep=False))
    refit = copy.fit(X, y, groups=groups)
    np.testing.assert_array_equal(refit.predict_proba(X), fitted.predict_proba(X))


def test_pickle_round_trip_gives_identical_probabilities(fitted, synthetic):
    X, _, _ = synthetic
    restored = pickle.loads(pickle.dumps(fitted))
    assert restored.device == "auto"
    np.testing.assert_array_equal(restored.predict_proba(X), fitted.predict_proba(X))
    assert list(restored.classes_) == list(fitted.classes_)


def test_save_params_round_trip_gives_identical_probabilities(fitted, synthetic, tmp_path):
    X, _, _ = synthetic
    fitted.save_params(f_params=tmp_path / "params.pt", f_criterion=tmp_path / "criterion.pt")
    fresh = tiny(radiomic_columns=fitted.radiomic_columns_, classes=[0, 1, 2]).initialize()
    fresh.load_params(f_params=tmp_path / "params.pt", f_criterion=tmp_path / "criterion.pt")
    np.testing.assert_array_equal(fresh.predict_proba(X), fitted.predict_proba(X))
    np.testing.assert_allclose(fresh.task_weights_, fitted.task_weights_)


def test_validation_split_holds_out_whole_patients():
    y = np.tile([0, 1, 2], 20)
    groups = np.repeat(["a", "b", "c", "d", "e"], 12)
    train, valid = GroupedValidSplit(0.2, random_state=0).split_indices(y, groups)
    assert set(groups[train]).isdisjoint(groups[valid])
    assert len(train) + len(valid) == len(y)
    _, valid_by_tile = GroupedValidSplit(0.2, random_state=0).split_indices(y)
    assert len(valid_by_tile) == 12


def test_flat_ablation_uses_weighted_cross_entropy(synthetic):
    X, y, _ = synthetic
    model = tiny(hierarchical=False, max_epochs=1).fit(X, y)
    assert isinstance(model.criterion_, FlatLoss)
    np.testing.assert_allclose(model.predict_proba(X).sum(1), 1.0, rtol=1e-6)
    with pytest.raises(AttributeError, match="flat model"):
        model.task_weights_


def test_image_only_ablation_has_a_fixed_gate(synthetic):
    X, y, _ = synthetic
    model = tiny(use_radiomics=False, max_epochs=1).fit(X[["image"]], y)
    assert isinstance(model.criterion_, HierarchicalLoss)
    np.testing.assert_array_equal(model.gate_weights(X[["image"]]).to_numpy(), [[1.0, 0.0]] * len(X))


def test_radiomics_only_ablation_needs_no_images(synthetic):
    X, y, _ = synthetic
    radiomics = X.drop(columns="image")
    model = tiny(use_image=False, max_epochs=1).fit(radiomics, y)
    assert model.module_.image_encoder is None
    assert model.predict_proba(radiomics).shape == (len(X), 3)


# --- bad input ------------------------------------------------------------------------

def test_predict_before_fit_raises_not_fitted(synthetic):
    X, _, _ = synthetic
    with pytest.raises(NotFittedError):
        tiny().predict_proba(X)
    with pytest.raises(NotFittedError):
        tiny().predict(X)


def test_missing_image_file_is_named(synthetic, tmp_path):
    X, y, _ = synthetic
    X = X.copy()
    missing = tmp_path / "no-such-tile.png"
    X["image"] = X["image"].astype(object)
    X.at[X.index[3], "image"] = str(missing)
    with pytest.raises(FileNotFoundError, match="no-such-tile.png"):
        tiny(max_epochs=1).fit(X, y)


def test_x_without_image_column_is_rejected(synthetic):
    X, y, _ = synthetic
    with pytest.raises(ValueError, match="no 'image' column"):
        tiny().fit(X.drop(columns="image"), y)
    with pytest.raises(TypeError, match="DataFrame"):
        tiny().fit(X["image"].tolist(), y)


def test_labels_outside_the_three_classes_are_rejected(synthetic):
    X, y, _ = synthetic
    with pytest.raises(ValueError, match="contains label 3"):
        tiny().fit(X, y.replace({2: 3}))
    with pytest.raises(ValueError, match="'Necrosis'"):
        tiny().fit(X, ["Necrosis"] * len(X))


def test_a_single_class_is_rejected(synthetic):
    X, _, _ = synthetic
    with pytest.raises(ValueError, match="single class"):
        tiny().fit(X, np.zeros(len(X), dtype=int))


def test_nan_radiomics_are_rejected_with_the_column(synthetic):
    X, y, _ = synthetic
    X = X.copy()
    X.loc[X.index[:2], "firstorder_Energy"] = np.nan
    with pytest.raises(ValueError, match="firstorder_Energy"):
        tiny().fit(X, y)


def test_missing_radiomic_columns_point_to_the_transformer(synthetic):
    X, y, _ = synthetic
    with pytest.raises(ValueError, match="RadiomicsTransformer"):
        tiny().fit(X[["image"]], y)


def test_both_branches_off_is_rejected(synthetic):
    X, y, _ = synthetic
    with pytest.raises(ValueError, match="cannot both be False"):
        tiny(use_image=False, use_radiomics=False).fit(X, y)


def test_batch_without_tumor_trains_without_nan(synthetic):
    X, y, _ = synthetic
    order = np.argsort(y.to_numpy(), kind="stable")  # the first batches hold only Non-Tumor
    model = tiny(max_epochs=1, train_split=None, iterator_train__shuffle=False)
    model.fit(X.iloc[order], y.iloc[order])
    assert np.isfinite(model.history_[-1]["train_loss"])
    assert np.isfinite(model.predict_proba(X)).all()


# --- early stopping ---------------------------------------------------------------------

def test_early_stopping_stops_on_a_plateau_and_restores_the_best_epoch(synthetic):
    X, y, groups = synthetic
    # A large learning rate overfits 48 tiles within a few epochs: the validation loss
    # turns up and early stopping must end the fit long before max_epochs.
    model = tiny(max_epochs=40, patience=3, lr=3e-2, batch_size=64).fit(X, y, groups=groups)
    history = model.history_
    best_flags = history[:, "valid_loss_best"]
    best = max(i for i, flag in enumerate(best_flags) if flag)
    assert len(history) < 40
    assert len(history) == best + 1 + 3  # stopped after `patience` epochs without progress
    assert history[-1, "valid_loss"] != history[best, "valid_loss"]
    # The restored network and loss are the best epoch's: the learned task weights are the
    # ones recorded then, and the validation loss recomputed now is the one recorded then.
    np.testing.assert_allclose(model.task_weights_,
                               [history[best, "task_weight_tumor"], history[best, "task_weight_viable"]],
                               rtol=1e-6)
    _, valid = GroupedValidSplit(0.2).split_indices(y.to_numpy(), groups.to_numpy(),
                                                    random_state=model.random_seed_)
    X_valid, y_valid = X.iloc[valid], y.iloc[valid].to_numpy()
    with torch.no_grad():
        logits, _ = model.forward(X_valid)
        loss = model.criterion_(logits, torch.tensor(y_valid))
    np.testing.assert_allclose(float(loss), history[best, "valid_loss"], rtol=1e-5)


# --- partial_fit ------------------------------------------------------------------------

def _regional(X):
    # Radiomic columns as a multi-region transformer names them.
    return X.rename(columns=lambda c: c if c == "image" else f"tissue__{c}")


def test_partial_fit_on_a_fresh_classifier_prepares_as_fit_does(synthetic):
    X, y, groups = synthetic
    X = _regional(X)
    by_fit = tiny(random_state=3).fit(X, y, groups=groups)
    by_partial = tiny(random_state=3).partial_fit(X, y, groups=groups)
    assert by_partial.radiomic_columns_ == by_fit.radiomic_columns_
    assert by_partial.radiomic_columns_[0].startswith("tissue__")
    for task in ("tumor", "viable", "flat"):
        np.testing.assert_array_equal(by_partial.class_weights_[task], by_fit.class_weights_[task])
    np.testing.assert_array_equal(by_partial.criterion_.tumor_weight, by_fit.criterion_.tumor_weight)
    np.testing.assert_array_equal(by_partial.predict_proba(X), by_fit.predict_proba(X))


def test_partial_fit_checks_parameters_and_data_like_fit(synthetic):
    X, y, _ = synthetic
    with pytest.raises(ValueError, match="cannot both be False"):
        tiny(use_image=False, use_radiomics=False).partial_fit(X, y)
    with pytest.raises(ValueError, match="single class"):
        tiny().partial_fit(X, np.zeros(len(X), dtype=int))
    with pytest.raises(ValueError, match="y is required"):
        tiny().partial_fit(X)


def test_partial_fit_continues_a_fitted_classifier_reproducibly(synthetic):
    X, y, groups = synthetic
    first = tiny(max_epochs=1, batch_size=64).fit(X, y, groups=groups)
    weights = first.class_weights_
    first.partial_fit(X.iloc[:24], y.iloc[:24], groups=groups.iloc[:24])
    assert len(first.history_) == 2
    assert first.class_weights_ is weights  # kept, not recomputed on the smaller batch
    second = tiny(max_epochs=1, batch_size=64).fit(X, y, groups=groups)
    second.partial_fit(X.iloc[:24], y.iloc[:24], groups=groups.iloc[:24])
    np.testing.assert_array_equal(first.predict_proba(X), second.predict_proba(X))
    with pytest.raises(ValueError, match="lacks the radiomic columns"):
        first.partial_fit(_regional(X), y)


# --- threads ----------------------------------------------------------------------------

def test_same_seed_fits_in_two_threads_give_identical_probabilities(synthetic):
    X, y, groups = synthetic
    params = dict(max_epochs=3, random_state=11)
    expected = tiny(**params).fit(X, y, groups=groups).predict_proba(X)
    results, errors = [None, None], []

    def work(slot):
        try:
            results[slot] = tiny(**params).fit(X, y, groups=groups).predict_proba(X)
        except Exception as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(slot,)) for slot in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for proba in results:
        np.testing.assert_array_equal(proba, expected)


# --- bad input, continued ---------------------------------------------------------------

def test_predict_names_missing_and_non_numeric_radiomic_columns(fitted, synthetic):
    X, _, _ = synthetic
    with pytest.raises(ValueError, match="lacks the radiomic columns.*firstorder_Energy"):
        fitted.predict_proba(X.drop(columns="firstorder_Energy"))
    text = X.assign(firstorder_Energy=X["firstorder_Energy"].astype(str))
    with pytest.raises(ValueError, match="must be numeric.*firstorder_Energy"):
        fitted.predict_proba(text)


def test_y_and_groups_of_the_wrong_length_are_rejected(synthetic):
    X, y, groups = synthetic
    with pytest.raises(ValueError, match=f"y has {len(X) - 1} labels"):
        tiny().fit(X, y.iloc[:-1])
    with pytest.raises(ValueError, match=f"groups has {len(X) - 2} entries"):
        tiny().fit(X, y, groups=groups.iloc[:-2])


def test_mixed_label_types_are_rejected(synthetic):
    X, y, _ = synthetic
    mixed = np.array(CLASS_NAMES, dtype=object)[y.to_numpy()]
    mixed[0] = 0
    with pytest.raises(ValueError, match="mixes label types"):
        tiny().fit(X, mixed)


def test_a_corrupt_image_file_is_named_at_fit_and_predict(fitted, synthetic, tmp_path):
    X, y, _ = synthetic
    broken = tmp_path / "broken-tile.png"
    broken.write_bytes(b"not an image at all")
    X = X.copy()
    X["image"] = X["image"].astype(object)
    X.at[X.index[5], "image"] = str(broken)
    with pytest.raises(ValueError, match="broken-tile.png"):
        fitted.predict_proba(X)
    with pytest.raises(ValueError, match="broken-tile.png"):
        tiny(max_epochs=1).fit(X, y)


def test_a_single_patient_warns_and_splits_by_tile(synthetic):
    X, y, _ = synthetic
    one_patient = np.full(len(X), "patient-1")
    with pytest.warns(UserWarning, match="single patient"):
        model = tiny(max_epochs=1).fit(X, y, groups=one_patient)
    assert np.isfinite(model.history_[-1, "valid_loss"])
    split = GroupedValidSplit(0.2, random_state=0)
    with pytest.warns(UserWarning, match="single patient"):
        train, valid = split.split_indices(y.to_numpy(), one_patient)
    by_tile = split.split_indices(y.to_numpy())
    np.testing.assert_array_equal(train, by_tile[0])
    np.testing.assert_array_equal(valid, by_tile[1])


@pytest.mark.parametrize("views", [0, 3, 16])
def test_predict_views_must_be_1_2_4_or_8(views, synthetic):
    X, y = synthetic[0], synthetic[1]
    with pytest.raises(ValueError, match=r"predict_views must be one of \[1, 2, 4, 8\]"):
        HierarchicalFusionClassifier(use_image=False, predict_views=views, max_epochs=1,
                                     verbose=0).fit(X, y)


def test_predict_views_must_be_an_int(synthetic):
    X, y = synthetic[0], synthetic[1]
    with pytest.raises(TypeError, match="predict_views must be an int"):
        HierarchicalFusionClassifier(use_image=False, predict_views=2.0, max_epochs=1,
                                     verbose=0).fit(X, y)


def test_predict_views_average_the_chosen_views_of_the_frozen_backbone():
    from hiercls.features.frozen import PREDICT_VIEW_SUBSETS

    X, y, _ = hiercls.datasets.make_synthetic_tiles(n_tiles=12, n_patients=2, size=32,
                                                    random_state=0)
    clf = HierarchicalFusionClassifier(use_radiomics=False, freeze_backbone=True,
                                       backbone="test_efficientnet", image_size=32,
                                       embed_dim=8, max_epochs=1, train_split=None,
                                       random_state=0, verbose=0, cache=None).fit(X, y)
    full = clf.predict_proba(X)
    calls = []
    original = hiercls.features.frozen.frozen_view_features

    def spy(*args, **kwargs):
        out = original(*args, **kwargs)
        calls.append((kwargs.get("views"), out))
        return out

    hiercls.features.frozen.frozen_view_features = spy
    try:
        one = clf.set_params(predict_views=1).predict_proba(X)
        four = clf.set_params(predict_views=4).predict_proba(X)
        eight = clf.set_params(predict_views=8).predict_proba(X)
    finally:
        hiercls.features.frozen.frozen_view_features = original
    assert [c[0] for c in calls] == [PREDICT_VIEW_SUBSETS[n] for n in (1, 4, 8)]
    assert [c[1].shape[1] for c in calls] == [1, 4, 8]
    # The subsets are those views of the 8, computed alone.
    np.testing.assert_allclose(calls[1][1], calls[2][1][:, list(PREDICT_VIEW_SUBSETS[4])],
                               rtol=1e-5, atol=1e-6)
    assert np.array_equal(eight, full)
    assert not np.array_equal(one, full) and not np.array_equal(four, full)
    assert "_predicting_" not in vars(clf) and "_predicting_" not in clf.get_params()


def test_predict_views_other_than_8_need_the_frozen_backbone(synthetic):
    X, y = synthetic[0], synthetic[1]
    with pytest.raises(ValueError, match="predict_views=2 needs freeze_backbone=True"):
        tiny(predict_views=2).fit(X, y)


def test_predict_views_set_after_fit_is_checked_at_prediction(fitted, synthetic):
    X = synthetic[0]
    clf = pickle.loads(pickle.dumps(fitted))
    clf.set_params(predict_views=3)
    with pytest.raises(ValueError, match=r"predict_views must be one of \[1, 2, 4, 8\]"):
        clf.predict_proba(X)
    clf.set_params(predict_views=4)   # a trainable backbone: views are not averaged
    with pytest.raises(ValueError, match="needs freeze_backbone=True"):
        clf.gate_weights(X)
    with pytest.raises(ValueError, match="needs freeze_backbone=True"):
        clf.predict_proba_and_gates(X)


def test_predict_proba_and_gates_runs_the_network_once(fitted, synthetic):
    X = synthetic[0]
    calls = []
    handle = fitted.module_.register_forward_hook(lambda module, args, out: calls.append(1))
    try:
        proba, gates = fitted.predict_proba_and_gates(X)
        once = len(calls)
        expected_proba, expected_gates = fitted.predict_proba(X), fitted.gate_weights(X)
    finally:
        handle.remove()
    assert once == len(calls) - 2 * once      # one pass, where the two methods take two
    np.testing.assert_allclose(proba, expected_proba, rtol=0, atol=1e-7)
    np.testing.assert_allclose(gates.to_numpy(), expected_gates.to_numpy(), rtol=0, atol=1e-7)
    assert list(gates.columns) == ["image", "radiomics"] and gates.index.equals(X.index)


# --- contracts: device "auto", module__ twins, criterion defaults, groups -----------------

class RecordDevice(Callback):
    """Records ``get_params()["device"]`` at every epoch and batch boundary."""

    def __init__(self, seen):
        self.seen = seen

    def _record(self, net, **kwargs):
        self.seen.append(net.get_params()["device"])

    on_train_begin = on_epoch_begin = on_batch_begin = on_batch_end = on_epoch_end = _record


def test_device_parameter_reads_auto_throughout_fit_partial_fit_and_forward_iter(synthetic):
    X, y, groups = synthetic
    seen = []
    clf = tiny(callbacks=[("record_device", RecordDevice(seen))])
    clf.fit(X, y, groups=groups)
    n_fit = len(seen)
    clf.partial_fit(X, y, groups=groups)
    assert n_fit > 2 * TINY_CLASSIFIER["max_epochs"] and len(seen) > n_fit
    during_iteration = [clf.get_params()["device"] for _ in clf.forward_iter(X)]
    assert len(during_iteration) == 3  # 48 tiles in batches of 16
    assert set(seen) == set(during_iteration) == {"auto"}
    assert clf.device == "auto"
    assert clf.device_ == ("cuda" if torch.cuda.is_available() else "cpu")
    logits = torch.cat([out[0] for out in clf.forward_iter(X)])
    np.testing.assert_allclose(clf.predict_proba(X), class_probabilities(logits).numpy(),
                               rtol=0, atol=1e-7)


class WatchedDevice(HierarchicalFusionClassifier):
    """Records which code reads the ``device`` attribute."""

    readers = []

    @property
    def device(self):
        caller = sys._getframe(1).f_code
        value = self.__dict__["device"]
        self.readers.append((caller.co_filename, caller.co_name, value))
        return value

    @device.setter
    def device(self, value):
        self.__dict__["device"] = value


def test_skorch_never_reads_auto_as_the_device(synthetic, tmp_path):
    # skorch reads `self.device` where it places modules, loads parameters and unpickles;
    # the classifier's public entry points give it `device_` there. "auto" is no torch
    # device, so any read that slipped through would also fail there.
    X, y, groups = synthetic
    WatchedDevice.readers.clear()
    clf = WatchedDevice(**{**TINY_CLASSIFIER, "patience": 1})
    clf.fit(X, y, groups=groups)
    clf.partial_fit(X, y, groups=groups)
    proba = clf.predict_proba(X)
    clf.gate_weights(X)
    clf.save_params(f_params=tmp_path / "p.pt", f_criterion=tmp_path / "c.pt",
                    f_optimizer=tmp_path / "o.pt", f_history=tmp_path / "h.json")
    fresh = WatchedDevice(**{**TINY_CLASSIFIER, "radiomic_columns": clf.radiomic_columns_}).initialize()
    fresh.load_params(f_params=tmp_path / "p.pt", f_criterion=tmp_path / "c.pt",
                      f_optimizer=tmp_path / "o.pt", f_history=tmp_path / "h.json")
    np.testing.assert_array_equal(fresh.predict_proba(X), proba)
    assert len(fresh.history_) == len(clf.history_)
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_proba(X), proba)
    skorch_dir = os.path.dirname(skorch.__file__)
    # The scoring callbacks' cached forward_iter takes `device` as the default of callers
    # that give none; the classifier's predict_proba, predict and gate_weights give one.
    by_skorch = [reader for reader in WatchedDevice.readers if reader[0].startswith(skorch_dir)
                 and reader[1] != "_cache_net_forward_iter"]
    assert by_skorch and {reader[2] for reader in by_skorch} == {clf.device_}
    # Between those entry points the parameter is the user's again.
    assert clf.device == fresh.device == "auto"
    assert restored.device == "auto" and restored.device_ == clf.device_


def test_set_params_device_updates_device_(synthetic):
    X, y, _ = synthetic
    clf = tiny(max_epochs=1, train_split=None).fit(X, y)
    clf.set_params(device="cpu")
    assert clf.device == "cpu" and clf.device_ == "cpu"
    clf.set_params(device="auto")
    assert clf.device == "auto"
    assert clf.device_ == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("twin, own", [("embed_dim", "embed_dim"), ("backbone", "backbone"),
                                       ("stain_jitter", "stain_jitter"),
                                       ("n_radiomic_features", "radiomic_columns"),
                                       ("hierarchical", "hierarchical")])
def test_module_parameters_twinning_the_classifiers_own_are_rejected(twin, own, synthetic):
    X, y, _ = synthetic
    value = {"embed_dim": 8, "backbone": "test_vit", "stain_jitter": 0.1,
             "n_radiomic_features": 3, "hierarchical": False}[twin]
    message = rf"module__{twin} conflicts with the classifier's parameter '{own}'"
    with pytest.raises(ValueError, match=message):
        tiny(**{f"module__{twin}": value}).fit(X, y)
    with pytest.raises(ValueError, match=message):
        tiny(**{f"module__{twin}": value}).initialize()
    fitted = tiny(max_epochs=1, train_split=None).fit(X, y)
    with pytest.raises(ValueError, match=message):
        fitted.set_params(**{f"module__{twin}": value})


class SubHierarchicalLoss(HierarchicalLoss):
    pass


class SubFlatLoss(FlatLoss):
    pass


def test_criterion_subclasses_get_the_class_weights_and_eta(synthetic):
    X, y, _ = synthetic
    keep = (y != 1).to_numpy() | (np.arange(len(y)) % 3 == 0)  # uneven classes
    X, y = X[keep], y[keep]
    hierarchical = tiny(criterion=SubHierarchicalLoss, eta=0.7, max_epochs=1).fit(X, y)
    assert type(hierarchical.criterion_) is SubHierarchicalLoss
    assert hierarchical.criterion_.eta == 0.7
    for task in ("tumor", "viable"):
        np.testing.assert_allclose(getattr(hierarchical.criterion_, f"{task}_weight").numpy(),
                                   hierarchical.class_weights_[task], rtol=1e-6)
    assert not np.allclose(hierarchical.class_weights_["tumor"], 1.0)
    flat = tiny(criterion=SubFlatLoss, hierarchical=False, max_epochs=1).fit(X, y)
    assert type(flat.criterion_) is SubFlatLoss
    np.testing.assert_allclose(flat.criterion_.class_weight.numpy(), flat.class_weights_["flat"],
                               rtol=1e-6)
    # criterion__ parameters still win over the defaults.
    chosen = tiny(criterion=SubHierarchicalLoss, criterion__eta=0.05, max_epochs=1).fit(X, y)
    assert chosen.criterion_.eta == 0.05


def test_initialize_without_fit_takes_unit_class_weights():
    clf = tiny().initialize()
    assert clf.class_weights_ is None
    np.testing.assert_array_equal(clf.criterion_.tumor_weight.numpy(), [1.0, 1.0])
    assert clf.radiomic_columns_ == list(FEATURE_NAMES)


def test_patients_reach_a_custom_train_split_as_a_fit_parameter(synthetic):
    X, y, groups = synthetic
    calls = []

    def split(dataset, y, groups=None):
        calls.append(groups)
        return GroupedValidSplit(0.25, random_state=0)(dataset, y, groups=groups)

    clf = tiny(train_split=split, max_epochs=1)
    clf.fit(X, y, groups=groups)
    clf.partial_fit(X, y, groups=groups)
    assert len(calls) == 2
    for received in calls:
        np.testing.assert_array_equal(received, groups.to_numpy())
    # Nothing of the patients stays on the classifier after the fit.
    assert not [name for name, value in vars(clf).items()
                if isinstance(value, np.ndarray) and value.shape == (len(X),)]
    tile_split = tiny(train_split=split, max_epochs=1).fit(X, y)
    assert calls[-1] is None and tile_split.history_[-1, "valid_loss"] > 0


def test_fit_and_partial_fit_share_one_preparation(synthetic, monkeypatch):
    X, y, groups = synthetic
    prepared = []
    original = HierarchicalFusionClassifier._prepare

    def spy(self, *args, **kwargs):
        prepared.append(kwargs["fresh"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(HierarchicalFusionClassifier, "_prepare", spy)
    clf = tiny(max_epochs=1).fit(X, y, groups=groups)
    clf.partial_fit(X, y, groups=groups)
    tiny(max_epochs=1).partial_fit(X, y, groups=groups)
    assert prepared == [True, False, True]


def test_load_params_maps_onto_device_for_checkpoints_and_safetensors(fitted, synthetic, tmp_path):
    from skorch.callbacks import Checkpoint

    X, y, groups = synthetic
    checkpoint = Checkpoint(dirname=str(tmp_path / "cp"), monitor=None, f_pickle=None)
    clf = tiny(callbacks=[("checkpoint", checkpoint)]).fit(X, y, groups=groups)
    fresh = tiny(radiomic_columns=clf.radiomic_columns_)
    fresh.load_params(checkpoint=checkpoint)
    assert fresh.device == "auto"
    np.testing.assert_array_equal(fresh.predict_proba(X), clf.predict_proba(X))
    assert len(fresh.history_) == len(clf.history_)
    fitted.save_params(f_params=tmp_path / "p.safetensors", use_safetensors=True)
    other = tiny(radiomic_columns=fitted.radiomic_columns_).initialize()
    other.load_params(f_params=tmp_path / "p.safetensors", use_safetensors=True)
    with open(tmp_path / "p.safetensors", "rb") as handle:
        tiny(radiomic_columns=fitted.radiomic_columns_).initialize().load_params(
            f_params=handle, use_safetensors=True)
    # The network is fitted's; the loss was not loaded, so compare the logits.
    logits = torch.cat([out[0] for out in other.forward_iter(X)])
    torch.testing.assert_close(logits, torch.cat([out[0] for out in fitted.forward_iter(X)]),
                               rtol=0, atol=0)
    with pytest.raises(TypeError, match="unexpected argument"):
        other.load_params(params=tmp_path / "p.pt")


def test_fitting_a_frozen_backbone_without_weights_warns_with_the_fix():
    from hiercls.data.datasets import make_synthetic_tiles
    from hiercls.estimator.classifier import RandomFrozenBackboneWarning

    X, y, _ = make_synthetic_tiles(n_tiles=12, n_patients=2, size=32, random_state=0)
    frozen = HierarchicalFusionClassifier(**{**TINY_CLASSIFIER, "max_epochs": 1},
                                          use_radiomics=False, freeze_backbone=True, cache=None)
    with pytest.warns(RandomFrozenBackboneWarning, match="pass pretrained=.*freeze_backbone=False"):
        frozen.fit(X, y)
    trained = HierarchicalFusionClassifier(**{**TINY_CLASSIFIER, "max_epochs": 1},
                                           use_radiomics=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RandomFrozenBackboneWarning)
        trained.fit(X, y)


# --- issue 19: scikit-learn's attributes and methods ----------------------------------

def test_predict_log_proba_is_the_log_of_predict_proba(fitted, synthetic):
    X = synthetic[0]
    proba = fitted.predict_proba(X)
    log_proba = fitted.predict_log_proba(X)
    assert log_proba.shape == proba.shape == (len(X), 3)
    np.testing.assert_allclose(np.exp(log_proba), proba, rtol=1e-6, atol=0)
    assert (log_proba <= 0).all()


def test_fit_records_the_columns_it_saw(synthetic):
    X, y, _ = synthetic
    clf = tiny(max_epochs=1, train_split=None).fit(X, y)
    assert clf.n_features_in_ == X.shape[1]
    np.testing.assert_array_equal(clf.feature_names_in_, np.asarray(X.columns, dtype=object))
    assert clf.feature_names_in_.dtype == object
    # Columns that are not all strings give no names, and a refit forgets the old ones.
    renamed = X.rename(columns={X.columns[-1]: 7})
    clf.set_params(use_radiomics=False).fit(renamed, y)
    assert clf.n_features_in_ == X.shape[1] and not hasattr(clf, "feature_names_in_")
