import warnings

import numpy as np
import pytest
import torch
from sklearn.utils.metadata_routing import get_routing_for_object
from torch.utils.data import Subset, TensorDataset

from hiercls.estimator.splits import GroupedValidSplit


def _labels_and_patients(n_patients=5, per_patient=12):
    y = np.tile([0, 1, 2], n_patients * per_patient // 3)
    patients = np.repeat([f"p{i}" for i in range(n_patients)], per_patient)
    return y, patients


def test_with_patients_the_validation_part_is_whole_patients():
    y, patients = _labels_and_patients()
    for seed in range(5):
        train, valid = GroupedValidSplit(0.4, random_state=seed).split_indices(y, patients)
        assert set(patients[train]).isdisjoint(patients[valid])
        assert len(set(patients[valid])) == 2  # 40% of 5 patients
        np.testing.assert_array_equal(np.sort(np.concatenate([train, valid])), np.arange(len(y)))


def test_without_patients_the_split_is_stratified_by_tile():
    y = np.array([0] * 30 + [1] * 20 + [2] * 10)
    train, valid = GroupedValidSplit(0.2, random_state=0).split_indices(y)
    assert len(valid) == 12 and len(train) == 48
    np.testing.assert_array_equal(np.bincount(y[valid]), [6, 4, 2])
    assert set(train).isdisjoint(valid)


def test_a_class_too_rare_to_stratify_falls_back_to_a_random_split():
    y = np.array([0] * 19 + [1])  # one tile of class 1 cannot go to both sides
    train, valid = GroupedValidSplit(0.25, random_state=0).split_indices(y)
    assert len(valid) == 5 and len(train) == 15
    assert set(train).isdisjoint(valid)


def test_a_single_patient_warns_and_splits_by_tile():
    y, _ = _labels_and_patients()
    one = np.full(len(y), "only")
    split = GroupedValidSplit(0.2, random_state=1)
    with pytest.warns(UserWarning, match="single patient"):
        by_patient = split.split_indices(y, one)
    by_tile = split.split_indices(y)
    for a, b in zip(by_patient, by_tile):
        np.testing.assert_array_equal(a, b)


def test_its_own_random_state_wins_over_the_one_given():
    y, patients = _labels_and_patients(n_patients=10, per_patient=6)
    own = GroupedValidSplit(0.3, random_state=4)
    np.testing.assert_array_equal(own.split_indices(y, patients, random_state=0)[1],
                                  own.split_indices(y, patients, random_state=99)[1])
    free = GroupedValidSplit(0.3)
    np.testing.assert_array_equal(free.split_indices(y, patients, random_state=4)[1],
                                  own.split_indices(y, patients)[1])
    draws = {tuple(free.split_indices(y, patients, random_state=s)[1]) for s in range(6)}
    assert len(draws) > 1


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_fraction_outside_zero_one_is_rejected(fraction):
    with pytest.raises(ValueError, match=r"fraction must lie in \(0, 1\)"):
        GroupedValidSplit(fraction).split_indices(np.tile([0, 1], 10))


def test_groups_of_the_wrong_length_are_rejected():
    with pytest.raises(ValueError, match="groups has 3 entries; expected one per tile \\(10\\)"):
        GroupedValidSplit().split_indices(np.tile([0, 1], 5), ["a", "b", "c"])


def test_called_as_a_skorch_train_split_it_returns_two_subsets():
    y, patients = _labels_and_patients()
    dataset = TensorDataset(torch.arange(len(y)))
    split = GroupedValidSplit(0.2, random_state=0)
    train, valid = split(dataset, y, groups=patients)
    assert isinstance(train, Subset) and isinstance(valid, Subset)
    assert train.dataset is dataset and valid.dataset is dataset
    expected = split.split_indices(y, patients)
    np.testing.assert_array_equal(train.indices, expected[0])
    np.testing.assert_array_equal(valid.indices, expected[1])


def test_split_yields_one_pair_as_a_cv_splitter_does():
    y, patients = _labels_and_patients()
    split = GroupedValidSplit(0.2, random_state=0)
    pairs = list(split.split(np.zeros((len(y), 1)), y, patients))
    assert len(pairs) == 1
    np.testing.assert_array_equal(pairs[0][1], split.split_indices(y, patients)[1])
    # Without y, X's length is what is split.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (train, valid), = split.split(np.zeros((20, 1)))
    assert len(train) + len(valid) == 20


def test_it_requests_groups_for_split_through_metadata_routing():
    routing = get_routing_for_object(GroupedValidSplit())
    assert routing.consumes(method="split", params={"groups"}) == {"groups"}
    assert routing.consumes(method="fit", params={"groups"}) == set()


def test_repr_shows_its_parameters():
    assert repr(GroupedValidSplit(0.3, random_state=2)) == \
        "GroupedValidSplit(fraction=0.3, random_state=2)"


def test_by_tiles_draws_tiles_even_when_groups_are_given():
    y = np.tile([0, 1, 2], 20)
    patients = np.repeat(list("abcde"), 12)
    train, valid = GroupedValidSplit(0.2, random_state=0, by="tiles").split_indices(y, patients)
    # A stratified tile split: every class in the validation part, patients on both sides.
    assert set(y[valid]) == {0, 1, 2}
    assert set(patients[train]) & set(patients[valid])
    grouped_train, grouped_valid = GroupedValidSplit(0.2, random_state=0).split_indices(y, patients)
    assert not set(patients[grouped_train]) & set(patients[grouped_valid])


def test_by_must_be_groups_or_tiles():
    with pytest.raises(ValueError, match="by must be 'groups' or 'tiles'"):
        GroupedValidSplit(0.2, by="patients").split_indices(np.zeros(10))
    assert "by='tiles'" in repr(GroupedValidSplit(by="tiles"))
    assert "by=" not in repr(GroupedValidSplit())
