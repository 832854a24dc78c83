import numpy as np
import pytest
from scipy.special import softmax
from sklearn.base import clone
from sklearn.metrics import log_loss

from hiercls.data.labels import CLASS_NAMES
from hiercls.evaluation.calibration import TemperatureScaling, apply_temperature, fit_temperature


def _tiles_at_temperature(true_temperature, n=3000, seed=0):
    """Labels drawn from softmax(logits), probabilities reported at another temperature."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(n, 3))
    honest = softmax(logits, axis=1)
    y = np.array([rng.choice(3, p=row) for row in honest])
    # What an over-confident model says: the same logits, sharpened.
    reported = softmax(logits * true_temperature, axis=1)
    return reported, y, honest


def test_recovers_the_temperature_of_overconfident_probabilities():
    reported, y, _ = _tiles_at_temperature(2.0)
    temperature = fit_temperature(reported, y)
    assert temperature == pytest.approx(2.0, rel=0.1)
    calibrated = apply_temperature(reported, temperature)
    assert log_loss(y, calibrated, labels=[0, 1, 2]) < log_loss(y, reported, labels=[0, 1, 2])
    # Timid probabilities want T < 1.
    timid, y_timid, _ = _tiles_at_temperature(0.5, seed=1)
    assert fit_temperature(timid, y_timid) == pytest.approx(0.5, rel=0.1)


def test_temperature_keeps_the_argmax_and_rows_sum_to_one():
    reported, _, _ = _tiles_at_temperature(2.0, n=200)
    for temperature in (0.3, 1.0, 4.0):
        scaled = apply_temperature(reported, temperature)
        np.testing.assert_allclose(scaled.sum(axis=1), 1.0)
        np.testing.assert_array_equal(scaled.argmax(axis=1), reported.argmax(axis=1))
    np.testing.assert_allclose(apply_temperature(reported, 1.0), reported, atol=1e-12)
    # Zero probabilities stay (nearly) zero instead of failing on log(0).
    assert apply_temperature([[1.0, 0.0, 0.0]], 2.0)[0, 0] == pytest.approx(1.0, abs=1e-5)


def test_class_names_and_codes_give_the_same_temperature():
    reported, y, _ = _tiles_at_temperature(1.5, n=500)
    names = np.array(CLASS_NAMES)[y]
    assert fit_temperature(reported, names) == pytest.approx(fit_temperature(reported, y))


def test_temperature_scaling_estimator():
    reported, y, _ = _tiles_at_temperature(2.0)
    scaling = TemperatureScaling().fit(reported, y)
    assert scaling.temperature_ == pytest.approx(fit_temperature(reported, y))
    np.testing.assert_allclose(scaling.predict_proba(reported),
                               apply_temperature(reported, scaling.temperature_))
    np.testing.assert_allclose(scaling.transform(reported), scaling.predict_proba(reported))
    assert not hasattr(clone(scaling), "temperature_")
    narrow = TemperatureScaling(bounds=(0.5, 1.2)).fit(reported, y)
    assert narrow.temperature_ == pytest.approx(1.2, abs=1e-3)


@pytest.mark.parametrize("call, error, message", [
    (lambda: apply_temperature([[0.5, 0.5]], 1.0), ValueError, r"shape \(n_samples, 3\)"),
    (lambda: apply_temperature([[0.5, 0.5, np.nan]], 1.0), ValueError, "finite"),
    (lambda: apply_temperature([[0.5, 0.3, 0.2]], 0.0), ValueError, "temperature"),
    (lambda: apply_temperature([[0.5, 0.3, 0.2]], "hot"), TypeError, "temperature"),
    (lambda: fit_temperature([[0.5, 0.3, 0.2]], [0, 1]), ValueError, "one label per row"),
    (lambda: fit_temperature([[0.5, 0.3, 0.2]], [5]), ValueError, "y"),
    (lambda: fit_temperature([[0.5, 0.3, 0.2]], [0], bounds=(2, 1)), ValueError, "bounds"),
])
def test_invalid_inputs_are_named(call, error, message):
    with pytest.raises(error, match=message):
        call()


# The temperatures the hand-written fit (bounded search in log T, scipy's minimize_scalar,
# at commit 93142d4) found on these inputs; the fit on scikit-learn's temperature scaling
# must find the same. The old search stopped at xatol=1e-6 in log T, hence rel=1e-6.
_HAND_WRITTEN_TEMPERATURES = [
    # (seed, n, true temperature, T found, T found within bounds (0.5, 1.2))
    (19, 400, 2.0, 1.974315623665806, 1.199999489594241),
    (20, 400, 0.5, 0.5174846953824687, 0.517484695828806),
    (21, 50, 1.0, 1.1879141500937695, 1.1879142765439743),
]


@pytest.mark.parametrize("seed, n, true_temperature, found, found_in_bounds",
                         _HAND_WRITTEN_TEMPERATURES)
def test_scikit_learn_fit_finds_the_hand_written_temperature(seed, n, true_temperature,
                                                             found, found_in_bounds):
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=2.0, size=(n, 3))
    y = np.array([rng.choice(3, p=row) for row in softmax(logits, axis=1)])
    reported = softmax(logits * true_temperature, axis=1)
    assert fit_temperature(reported, y) == pytest.approx(found, rel=1e-6)
    assert fit_temperature(reported, y, bounds=(0.5, 1.2)) == pytest.approx(found_in_bounds,
                                                                            rel=1e-6)


def test_temperature_is_fitted_when_classes_are_absent_or_tiles_few():
    # One patient's tiles often lack a class; scikit-learn's default path would refuse.
    proba = [[0.6, 0.3, 0.1], [0.2, 0.3, 0.5], [0.3, 0.4, 0.3]]
    for y in ([0, 2, 2], [1, 1, 1], ["Non-Tumor", "Viable-Tumor", "Viable-Tumor"]):
        temperature = fit_temperature(proba, y)
        assert 0.05 <= temperature <= 20.0
        # It is the minimizer of the log-loss: nearby temperatures do worse.
        codes = np.array([CLASS_NAMES.index(v) if isinstance(v, str) else v for v in y])
        def loss(t, codes=codes):
            return log_loss(codes, apply_temperature(proba, t), labels=[0, 1, 2])
        assert loss(temperature) <= min(loss(temperature * 1.05), loss(temperature / 1.05))
