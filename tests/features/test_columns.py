"""The one get_feature_names_out of the tile-table transformers."""

import numpy as np
import pytest

from hiercls.data.datasets import make_synthetic_tiles
from hiercls.features.columns import TileTableColumnsMixin
from hiercls.features.radiomics import RadiomicsTransformer
from hiercls.features.resolution import TileResampler
from hiercls.features.stain_normalization import StainNormalizer


@pytest.fixture(scope="module")
def tiles():
    X, _, _ = make_synthetic_tiles(n_tiles=6, n_patients=2, size=32, random_state=0)
    return X


@pytest.mark.parametrize("make", [TileResampler, lambda: StainNormalizer(method=None),
                                  lambda: RadiomicsTransformer(mask="full", cache=None)])
def test_each_transformer_names_its_input_columns_then_its_own(tiles, make):
    transformer = make()
    assert isinstance(transformer, TileTableColumnsMixin)
    out = transformer.fit(tiles).transform(tiles)
    names = transformer.get_feature_names_out()
    assert list(names) == list(out.columns)
    assert list(names[:tiles.shape[1]]) == list(tiles.columns)
    assert np.array_equal(transformer.get_feature_names_out(tiles.columns), names)
    with pytest.raises(ValueError, match="input_features does not match the columns seen in fit"):
        transformer.get_feature_names_out(["something", "else"])


def test_unfitted_transformers_refuse_to_name_columns():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        TileResampler().get_feature_names_out()
