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
