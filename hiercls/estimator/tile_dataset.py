"""The torch Dataset a fit iterates over: decoded tiles, radiomic vectors and labels."""

from types import MappingProxyType

import numpy as np
import torch
from PIL import Image

from ..data.images import IMAGE_COLUMN, read_tile
from ..data.labels import encode_labels


class TileDataset(torch.utils.data.Dataset):
    """Tiles of a DataFrame as network inputs.

    Each item is ``({"image": float tensor (3, S, S), "radiomics": float tensor (r,)}, label)``,
    with the keys that the network uses. A tile is decoded and resized once, on first
    access, and kept (as uint8) for the later epochs of the same fit.

    Parameters
    ----------
    X : DataFrame
        One row per tile with an ``image`` column and the radiomic columns.
    y : array-like or None
        Labels in either form of :func:`hiercls.data.labels.encode_labels`; None at prediction.
    radiomic_columns : list of str
    image_size : int
        Tiles are resized to ``image_size`` x ``image_size``.
    mean, std : sequence of 3 floats
        Per-channel normalization of the [0, 1] pixel values.
    interpolation : {"bilinear", "bicubic", "nearest"}, default="bilinear"
    use_image, use_radiomics : bool
    image_features : ndarray of shape (n, ...) or None
        Backbone features computed beforehand (a frozen backbone); given, they replace
        the image.
    domains : ndarray of shape (n,) or None
        Each tile's group index for a patient adversary (-1: unknown), handed over as the
        input ``domain``; None leaves it out.

    Attributes
    ----------
    X, y : the inputs, kept so that skorch's scoring callbacks can read them.
    """

    _RESAMPLING = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}

    def __init__(self, X, y=None, *, radiomic_columns=(), image_size=224, mean=(0.5, 0.5, 0.5),
                 std=(0.5, 0.5, 0.5), interpolation="bilinear", use_image=True, use_radiomics=True,
                 image_features=None, domains=None):
        self.X = X
        self.y = y
        self.codes = None if y is None else torch.as_tensor(encode_labels(y)[0])
        self.use_image = use_image and image_features is None
        self.image_features = None if image_features is None else torch.as_tensor(image_features)
        self.radiomics = (
            torch.tensor(X[list(radiomic_columns)].to_numpy(dtype=np.float32, copy=True))
            if use_radiomics else None
        )
        self.tiles = X[IMAGE_COLUMN].tolist() if self.use_image else None
        self.image_size = int(image_size)
        self.resampling = self._RESAMPLING.get(interpolation, Image.BILINEAR)
        self.mean = torch.as_tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32).view(3, 1, 1)
        self.domains = None if domains is None else torch.as_tensor(domains, dtype=torch.int64)
        self._decoded = {}

    def __len__(self):
        return len(self.X)

    @property
    def decoded_tiles(self):
        """The tiles decoded so far, ``{index: uint8 (S, S, 3)}``: a read-only view that
        decodes nothing (what an epoch has already read)."""
        return MappingProxyType(self._decoded)

    def share_decoded_tiles(self, other):
        """Use ``other``'s decoded tiles (the same arrays, no copy) and share its store from
        now on, so that the tiles are decoded once for both. ``other`` must hold the same
        tiles; their count, size and resampling are checked. Returns self."""
        if (len(other) != len(self) or other.image_size != self.image_size
                or other.resampling != self.resampling):
            raise ValueError(
                f"other holds {len(other)} tiles of {other.image_size} px; expected "
                f"{len(self)} tiles of {self.image_size} px, resampled alike")
        self._decoded = other._decoded
        return self

    def decoded_tile(self, index):
        """The tile at ``index`` as uint8 (S, S, 3), decoded once."""
        tile = self._decoded.get(index)
        if tile is None:
            rgb = read_tile(self.tiles[index])
            if rgb.shape[:2] != (self.image_size, self.image_size):
                resized = Image.fromarray(rgb).resize((self.image_size, self.image_size), self.resampling)
                rgb = np.asarray(resized)
            # Decoded images are read-only views; torch wants memory it may write.
            tile = self._decoded[index] = rgb if rgb.flags.writeable else rgb.copy()
        return tile

    def image_tensor(self, index):
        pixels = torch.from_numpy(self.decoded_tile(index)).permute(2, 0, 1)
        return (pixels.float() / 255.0 - self.mean) / self.std

    def __getitem__(self, index):
        inputs = {}
        if self.use_image:
            inputs["image"] = self.image_tensor(index)
        if self.image_features is not None:
            inputs["image_features"] = self.image_features[index]
        if self.radiomics is not None:
            inputs["radiomics"] = self.radiomics[index]
        if self.domains is not None:
            inputs["domain"] = self.domains[index]
        label = self.codes[index] if self.codes is not None else torch.tensor(-1)
        return inputs, label
