"""ArrayCache: per-tile arrays on disk, keyed by the tile's digest and the settings."""

import json
from pathlib import Path

import numpy as np
import pytest

from hiercls.features.cache import (
    CACHE_ENV_VARIABLE,
    ArrayCache,
    default_cache_dir,
    resolve_cache_dir,
    settings_key,
)

DIGEST = "ab" + "0" * 38


def test_put_then_get_gives_back_the_same_array(tmp_path):
    cache = ArrayCache(tmp_path, "radiomics", {"bin_width": 25.0})
    array = np.linspace(0, 1, 29, dtype=np.float32)
    cache.put(DIGEST, array)
    back = cache.get(DIGEST)
    assert back.dtype == np.float32 and np.array_equal(back, array)
    # One .npy per entry (under the digest's first two characters) and the settings beside.
    assert (cache.directory / "ab" / f"{DIGEST}.npy").is_file()
    assert (cache.directory / "settings.json").is_file()
    assert not list(cache.directory.rglob("*.tmp"))


def test_an_entry_never_written_is_a_miss(tmp_path):
    assert ArrayCache(tmp_path, "radiomics", {}).get(DIGEST) is None


def test_a_put_replaces_the_earlier_entry(tmp_path):
    cache = ArrayCache(tmp_path, "radiomics", {})
    cache.put(DIGEST, np.zeros(3))
    cache.put(DIGEST, np.ones(3))
    assert np.array_equal(cache.get(DIGEST), np.ones(3))


def test_other_settings_or_namespaces_never_see_an_entry(tmp_path):
    ArrayCache(tmp_path, "radiomics", {"bin_width": 25.0, "mask": "full"}).put(DIGEST, np.ones(2))
    assert ArrayCache(tmp_path, "radiomics", {"bin_width": 10.0, "mask": "full"}).get(DIGEST) is None
    assert ArrayCache(tmp_path, "embeddings", {"bin_width": 25.0, "mask": "full"}).get(DIGEST) is None
    # The same settings in another order are the same entry.
    same = ArrayCache(tmp_path, "radiomics", {"mask": "full", "bin_width": 25.0})
    assert np.array_equal(same.get(DIGEST), np.ones(2))


def test_settings_key_is_short_stable_and_tells_settings_apart():
    key = settings_key({"a": 1, "b": [1, 2]})
    assert key == settings_key({"b": [1, 2], "a": 1}) and len(key) == 16
    assert key != settings_key({"a": 2, "b": [1, 2]})


@pytest.mark.parametrize("damage", ["empty", "truncated header", "truncated data", "not npy"])
def test_a_damaged_file_is_a_miss_and_the_next_put_repairs_it(tmp_path, damage):
    cache = ArrayCache(tmp_path, "radiomics", {})
    cache.put(DIGEST, np.arange(10.0))
    path = cache.directory / "ab" / f"{DIGEST}.npy"
    whole = path.read_bytes()
    path.write_bytes({"empty": b"", "truncated header": whole[:20],
                      "truncated data": whole[:-8], "not npy": b"not an array" * 8}[damage])
    assert cache.get(DIGEST) is None
    cache.put(DIGEST, np.arange(10.0))
    assert np.array_equal(cache.get(DIGEST), np.arange(10.0))


def test_resolve_cache_dir_none_and_false_mean_no_cache():
    assert resolve_cache_dir(None) is None
    assert resolve_cache_dir(False) is None


def test_resolve_cache_dir_auto_is_the_environment_variable_else_home(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV_VARIABLE, str(tmp_path / "here"))
    assert resolve_cache_dir("auto") == tmp_path / "here" == default_cache_dir()
    for unset in (monkeypatch.delenv, lambda name: monkeypatch.setenv(name, "")):
        unset(CACHE_ENV_VARIABLE)
        assert resolve_cache_dir("auto") == Path.home() / ".cache" / "hiercls"


def test_resolve_cache_dir_takes_a_path_as_given(tmp_path):
    assert resolve_cache_dir(str(tmp_path / "c")) == tmp_path / "c"
    assert resolve_cache_dir(tmp_path / "c") == tmp_path / "c"


@pytest.mark.parametrize("cache", [True, 3, ["folder"]])
def test_resolve_cache_dir_refuses_anything_else_naming_it(cache):
    with pytest.raises(ValueError, match=r"cache must be 'auto', a folder path or None; got "
                                         + repr(cache).replace("[", r"\[")):
        resolve_cache_dir(cache)


def test_threads_sharing_a_cache_write_each_entry_and_the_settings_whole(tmp_path):
    import pickle
    import threading

    cache = ArrayCache(tmp_path, "test", {"a": 1, "long": "x" * 10_000})
    arrays = {f"{index:040x}": np.full(1000, index, dtype=np.float32) for index in range(64)}
    threads = [threading.Thread(target=lambda items: [cache.put(d, a) for d, a in items],
                                args=(list(arrays.items())[start::4],)) for start in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for digest, array in arrays.items():
        np.testing.assert_array_equal(cache.get(digest), array)
    assert json.loads((cache.directory / "settings.json").read_text()) == cache.settings
    assert not list(tmp_path.rglob("*.tmp"))
    # The lock is the copy's own: a pickled cache (a joblib worker's) writes too.
    copy = pickle.loads(pickle.dumps(cache))
    copy.put("f" * 40, np.zeros(2))
    assert copy._write_lock is not cache._write_lock and copy.get("f" * 40).shape == (2,)
