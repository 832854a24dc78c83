"""The class hierarchy and the probability validator of hiercls.data.labels."""

import numpy as np
import pandas as pd
import pytest
import torch

from hiercls.data.labels import (
    CLASS_NAMES,
    NON_TUMOR,
    NON_VIABLE_TUMOR,
    PROBABILITY_TOLERANCE,
    TUMOR_CODES,
    VIABLE_CODES,
    VIABLE_TUMOR,
    check_probabilities,
    compose_probabilities,
    tumor_target,
    viable_target,
)


def test_hierarchy_constants_follow_the_class_names():
    assert CLASS_NAMES[NON_TUMOR] == "Non-Tumor"
    assert CLASS_NAMES[NON_VIABLE_TUMOR] == "Non-Viable-Tumor"
    assert CLASS_NAMES[VIABLE_TUMOR] == "Viable-Tumor"
    assert TUMOR_CODES == (NON_VIABLE_TUMOR, VIABLE_TUMOR) and VIABLE_CODES == (VIABLE_TUMOR,)


def test_targets_of_the_two_heads():
    codes = np.array([0, 1, 2, 2, 0, 1])
    np.testing.assert_array_equal(tumor_target(codes), [0, 1, 1, 1, 0, 1])
    np.testing.assert_array_equal(viable_target(codes), [-1, 0, 1, 1, -1, 0])
    assert tumor_target(codes).dtype == np.int64 and viable_target(codes).dtype == np.int64


def test_targets_of_tensors_are_tensors_with_the_same_values():
    codes = torch.tensor([0, 1, 2, 2, 0, 1])
    tumor, viable = tumor_target(codes), viable_target(codes)
    assert isinstance(tumor, torch.Tensor) and tumor.dtype == torch.int64
    assert tumor.tolist() == tumor_target(codes.numpy()).tolist()
    assert viable.tolist() == viable_target(codes.numpy()).tolist()


@pytest.mark.parametrize("as_type", [np.asarray, torch.as_tensor], ids=["numpy", "torch"])
def test_compose_probabilities(as_type):
    rng = np.random.default_rng(0)
    p_a = rng.dirichlet([1, 1], size=20)
    p_b = rng.dirichlet([1, 1], size=20)
    proba = compose_probabilities(as_type(p_a), as_type(p_b))
    assert type(proba) is type(as_type(p_a))
    proba = np.asarray(proba)
    np.testing.assert_allclose(proba[:, NON_TUMOR], p_a[:, 0])
    np.testing.assert_allclose(proba[:, NON_VIABLE_TUMOR], p_a[:, 1] * p_b[:, 0])
    np.testing.assert_allclose(proba[:, VIABLE_TUMOR], p_a[:, 1] * p_b[:, 1])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    # The two heads' probabilities come back by marginalizing.
    np.testing.assert_allclose(proba[:, list(TUMOR_CODES)].sum(axis=1), p_a[:, 1])


def test_check_probabilities_accepts_and_returns_floats():
    p = check_probabilities([[1, 0, 0], [0.2, 0.3, 0.5]])
    assert p.dtype == np.float64 and p.shape == (2, 3)
    # float32 rounding of a softmax passes.
    check_probabilities(np.full((4, 3), 1 / 3, dtype=np.float32))
    check_probabilities([[0.5, 0.5 + PROBABILITY_TOLERANCE / 2, 0.0]])


def test_check_probabilities_takes_the_class_columns_of_a_frame():
    frame = pd.DataFrame({"Viable-Tumor": [0.7], "patient": ["P1"], "Non-Tumor": [0.1],
                          "Non-Viable-Tumor": [0.2]})
    np.testing.assert_array_equal(check_probabilities(frame), [[0.1, 0.2, 0.7]])


@pytest.mark.parametrize("proba, match", [
    (np.ones((2, 2)) / 2, r"p_test must have shape \(n_samples, 3\)"),
    (np.ones(3) / 3, r"p_test must have shape .*got shape \(3,\)"),
    (np.empty((0, 3)), "at least one row"),
    ([["a", "b", "c"]], "p_test must be numeric"),
    ([[0.5, np.nan, 0.5]], "p_test contains NaN or infinite"),
    ([[0.5, np.inf, 0.5]], "p_test contains NaN or infinite"),
    ([[1.5, -0.5, 0.0]], r"p_test must hold probabilities in \[0, 1\]"),
    ([[0.2, 0.3, 0.6]], "p_test must have rows summing to 1.*row 0 sums to 1.1"),
    ([[1.0, 0.0, 0.0], [2.0, 3.0, 1.0]], r"p_test must hold probabilities"),
])
def test_check_probabilities_errors_name_the_input(proba, match):
    with pytest.raises(ValueError, match=match):
        check_probabilities(proba, name="p_test")


def test_check_probabilities_scores_need_only_shape_and_finiteness():
    scores = np.array([[3.0, -1.0, 0.5]])
    np.testing.assert_array_equal(check_probabilities(scores, scores=True), scores)
    with pytest.raises(ValueError, match="finite scores"):
        check_probabilities([[np.nan, 0.0, 0.0]], scores=True)


def test_check_probabilities_other_class_counts():
    check_probabilities([[0.4, 0.6]], n_classes=2)
    with pytest.raises(ValueError, match=r"shape \(n_samples, 2\)"):
        check_probabilities([[0.2, 0.3, 0.5]], n_classes=2)
    with pytest.raises(ValueError, match="n_classes"):
        check_probabilities([[1.0]], n_classes=0)
