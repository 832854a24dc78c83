"""Patient-adversarial training (adversary_by): a gradient reversal on the fused embedding."""

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

from hiercls import HierarchicalFusionClassifier, load_model, make_fusion_pipeline, save_model
from hiercls.data.datasets import make_synthetic_tiles

from ..conftest import TINY_CLASSIFIER, random_radiomics

RADIOMICS_ONLY = {**TINY_CLASSIFIER, "use_image": False, "train_split": None}


@pytest.fixture(scope="module")
def marked():
    """96 tiles of 4 patients whose radiomics carry the class and, strongly, the patient."""
    X, y, groups = make_synthetic_tiles(n_tiles=96, n_patients=4, size=32, random_state=0)
    features = random_radiomics(len(X), np.random.default_rng(0))
    features.iloc[:, 0] += np.asarray(y, dtype=float)
    patient = pd.factorize(np.asarray(groups))[0]
    features.iloc[:, 1:4] += 2.0 * patient[:, None]
    X = pd.concat([X.reset_index(drop=True), features], axis=1)
    return X, pd.Series(np.asarray(y)), patient


def _patient_probe(model, X, patient):
    """How well a linear probe reads the patient from the fused (radiomic) embedding."""
    with torch.no_grad():
        z = model.module_.radiomics_encoder(
            torch.tensor(X[model.radiomic_columns_].to_numpy(np.float32))).numpy()
    return cross_val_score(LogisticRegression(max_iter=2000), z, patient, cv=4).mean()


def test_the_adversary_hides_the_patient_from_the_embedding_and_keeps_the_class(marked):
    X, y, patient = marked
    params = {**RADIOMICS_ONLY, "max_epochs": 30, "lr": 3e-3}
    plain = HierarchicalFusionClassifier(**params).fit(X, y)
    adversarial = HierarchicalFusionClassifier(**params, adversary_by="patient",
                                               adversary_weight=0.3).fit(X, y)
    assert list(adversarial.adversary_domains_) == sorted(X["patient"].astype(str).unique())
    assert adversarial.module_.adversary is not None and plain.module_.adversary is None
    assert _patient_probe(adversarial, X, patient) < _patient_probe(plain, X, patient) - 0.05
    assert (adversarial.predict(X) == y).mean() >= 0.9


def test_prediction_needs_no_group_column(synthetic):
    X, y, groups = synthetic
    model = HierarchicalFusionClassifier(**RADIOMICS_ONLY, adversary_by="patient").fit(
        X.assign(patient=groups.to_numpy()), y)
    proba = model.predict_proba(X.drop(columns="patient"))
    np.testing.assert_array_equal(proba, model.predict_proba(X))


def test_the_model_file_keeps_the_adversary(tmp_path):
    X, y, _ = make_synthetic_tiles(n_tiles=24, n_patients=3, size=32, random_state=0)
    pipe = make_fusion_pipeline(preset="none", **{**RADIOMICS_ONLY, "max_epochs": 1},
                                adversary_by="patient", radiomics__mask="full",
                                radiomics__cache=None)
    proba = pipe.fit(X, y).predict_proba(X)
    save_model(pipe, tmp_path / "adversarial.hiercls")
    restored = load_model(tmp_path / "adversarial.hiercls")
    np.testing.assert_array_equal(restored.predict_proba(X), proba)
    clf = restored.named_steps["classifier"]
    np.testing.assert_array_equal(clf.adversary_domains_,
                                  pipe.named_steps["classifier"].adversary_domains_)


def test_the_adversary_is_seeded_like_the_rest(synthetic):
    X, y, groups = synthetic
    X = X.assign(patient=groups.to_numpy())
    fit = lambda: HierarchicalFusionClassifier(**RADIOMICS_ONLY, adversary_by="patient").fit(X, y)  # noqa: E731
    np.testing.assert_array_equal(fit().predict_proba(X), fit().predict_proba(X))


def test_adversary_by_names_what_it_needs(synthetic):
    X, y, groups = synthetic
    with pytest.raises(ValueError, match="adversary_by='slide' reads each tile's slide"):
        HierarchicalFusionClassifier(**RADIOMICS_ONLY, adversary_by="slide").fit(X, y)
    with pytest.raises(ValueError, match="at least 2 groups"):
        HierarchicalFusionClassifier(**RADIOMICS_ONLY, adversary_by="one").fit(X.assign(one="a"), y)
    with pytest.raises(ValueError, match="adversary_by must be None or the name"):
        HierarchicalFusionClassifier(**RADIOMICS_ONLY, adversary_by=2).fit(X, y)
    with pytest.raises(ValueError, match="adversary_weight"):
        HierarchicalFusionClassifier(**RADIOMICS_ONLY, adversary_by="patient",
                                     adversary_weight=0).fit(X.assign(patient=groups.to_numpy()), y)
