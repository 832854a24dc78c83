"""TileDataset: the decoded tiles a fit reads, and sharing them between datasets."""

import numpy as np
import pandas as pd
import pytest

from hiercls.estimator.tile_dataset import TileDataset


def _tiles(n=3, size=8):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]
    return pd.DataFrame({"image": pd.Series(images, dtype=object)})


def test_decoded_tiles_shows_only_what_was_read_and_decodes_nothing():
    dataset = TileDataset(_tiles(), image_size=8, use_radiomics=False)
    assert len(dataset.decoded_tiles) == 0
    dataset[1]
    assert list(dataset.decoded_tiles) == [1]
    assert np.array_equal(dataset.decoded_tiles[1], dataset.decoded_tile(1))
    assert len(dataset.decoded_tiles) == 1  # reading the view decoded no other tile
    with pytest.raises(TypeError):
        dataset.decoded_tiles[0] = np.zeros((8, 8, 3), np.uint8)


def test_share_decoded_tiles_reuses_the_same_arrays_from_then_on():
    first = TileDataset(_tiles(), image_size=8, use_radiomics=False)
    for index in range(len(first)):
        first[index]
    second = TileDataset(_tiles(), image_size=8, use_radiomics=False)
    assert second.share_decoded_tiles(first) is second
    assert all(second.decoded_tile(i) is first.decoded_tile(i) for i in range(len(first)))
    # One store: a tile either decodes later is there for both.
    fresh, other = (TileDataset(_tiles(), image_size=8, use_radiomics=False) for _ in range(2))
    other.share_decoded_tiles(fresh)
    other[2]
    assert list(fresh.decoded_tiles) == [2]


@pytest.mark.parametrize("n, size", [(2, 8), (3, 16)])
def test_share_decoded_tiles_refuses_other_tiles_naming_both(n, size):
    dataset = TileDataset(_tiles(), image_size=8, use_radiomics=False)
    other = TileDataset(_tiles(n), image_size=size, use_radiomics=False)
    with pytest.raises(ValueError, match=f"other holds {n} tiles of {size} px; expected 3 tiles of 8 px"):
        dataset.share_decoded_tiles(other)
