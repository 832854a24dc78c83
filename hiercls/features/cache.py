"""A content-addressed cache of per-tile arrays on disk.

Features that depend only on a tile's pixels and a few settings (radiomics, a frozen
backbone's embeddings) are computed once and reused across folds, fits and sessions.
Each entry is one ``.npy`` file named by the hash of the tile and the settings, written
atomically (a temporary file renamed into place) so that parallel workers never see half
a file. Within a process, an :class:`ArrayCache`'s writes take turns under its own lock,
so that threads sharing one cache write its ``settings.json`` once, whole.
"""

import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path

import numpy as np

CACHE_ENV_VARIABLE = "HIERCLS_CACHE_DIR"


def default_cache_dir():
    """``$HIERCLS_CACHE_DIR`` if set, else ``~/.cache/hiercls``."""
    return Path(os.environ.get(CACHE_ENV_VARIABLE) or Path.home() / ".cache" / "hiercls")


def resolve_cache_dir(cache):
    """Turn a ``cache`` parameter ("auto", a path or None) into a folder or None."""
    if cache is None or cache is False:
        return None
    if isinstance(cache, str) and cache == "auto":
        return default_cache_dir()
    if isinstance(cache, (str, os.PathLike)):
        return Path(cache)
    raise ValueError(f"cache must be 'auto', a folder path or None; got {cache!r}")


def settings_key(settings):
    """A short stable hash of a JSON-serializable settings mapping."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


class ArrayCache:
    """Per-tile arrays stored under ``folder/namespace/settings_key/``.

    Parameters
    ----------
    folder : path-like
        Root folder of the cache; created on first write.
    namespace : str
        What is cached (e.g. ``"radiomics"``), so different kinds never collide.
    settings : dict
        Everything besides the tile that determines the cached value.
    """

    def __init__(self, folder, namespace, settings):
        self.folder = Path(folder)
        self.namespace = namespace
        self.settings = settings
        # Guards this cache's writes within the process (processes rely on the renames).
        self._write_lock = threading.Lock()

    def __getstate__(self):
        # A lock does not pickle (joblib workers get caches); each copy makes its own.
        state = dict(vars(self))
        del state["_write_lock"]
        return state

    def __setstate__(self, state):
        vars(self).update(state)
        self._write_lock = threading.Lock()

    @property
    def directory(self):
        return self.folder / self.namespace / settings_key(self.settings)

    def _path(self, digest):
        return self.directory / digest[:2] / f"{digest}.npy"

    def get(self, digest):
        """The cached array for a tile digest, or None (a missing or damaged file)."""
        path = self._path(digest)
        try:
            return np.load(path, allow_pickle=False)
        # A damaged file is a miss (the next put replaces it); numpy raises EOFError for
        # an empty one and ValueError for a truncated or foreign one.
        except (ValueError, OSError, EOFError):
            return None

    def put(self, digest, array):
        """Store an array for a tile digest (atomic replace)."""
        path = self._path(digest)
        with self._write_lock:
            path.parent.mkdir(parents=True, exist_ok=True)
            settings_file = self.directory / "settings.json"
            if not settings_file.exists():
                text = json.dumps(self.settings, sort_keys=True, default=str, indent=1)
                _write_atomic(settings_file, lambda stream: stream.write(text.encode()))
            _write_atomic(path, lambda stream: np.save(stream, np.asarray(array),
                                                       allow_pickle=False))


def _write_atomic(path, write):
    """``write(stream)`` into a temporary file next to ``path``, then renamed onto it."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
