import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

#: The real TCIA tiles, beside the checkout as CI has them, or where HIERCLS_DATA_DIR says.
REAL_DATA_DIR = Path(
    os.environ.get("HIERCLS_DATA_DIR")
    or Path(__file__).resolve().parents[2] / "shared" / "data" / "osteosarcoma-ut-512"
)

#: A classifier small enough to train in seconds on two CPU cores.
TINY_CLASSIFIER = dict(backbone="test_efficientnet", image_size=32, embed_dim=16, max_epochs=2,
                       batch_size=16, patience=None, random_state=0, verbose=0)


@pytest.fixture(scope="session")
def real_data_dir():
    if not (REAL_DATA_DIR / "Training-Set-1").is_dir():
        pytest.skip(f"real TCIA tiles not found at {REAL_DATA_DIR} (set HIERCLS_DATA_DIR to run)")
    return REAL_DATA_DIR


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    # No test reads or writes the user's feature cache.
    monkeypatch.setenv("HIERCLS_CACHE_DIR", str(tmp_path / "hiercls-cache"))


def random_radiomics(n, rng, width=29):
    """A frame of standardized radiomic-like columns named like the transformer's."""
    from hiercls.features.radiomics import FEATURE_NAMES

    return pd.DataFrame(rng.normal(size=(n, width)), columns=list(FEATURE_NAMES[:width]))


@pytest.fixture(scope="session")
def synthetic():
    """48 small synthetic tiles from 4 patients, with radiomic-like columns added."""
    from hiercls.data.datasets import make_synthetic_tiles

    X, y, groups = make_synthetic_tiles(n_tiles=48, n_patients=4, size=32, random_state=0)
    rng = np.random.default_rng(0)
    features = random_radiomics(len(X), rng)
    # Make the radiomics informative so that fusion has something to learn from.
    features.iloc[:, 0] += np.asarray(y, dtype=float)
    X = pd.concat([X.reset_index(drop=True), features], axis=1)
    return X, pd.Series(np.asarray(y), name="label"), pd.Series(np.asarray(groups), name="patient")
