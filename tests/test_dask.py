"""Scale-out through joblib's Dask backend: the same results as a local run.

GridSearchCV (n_jobs=-1) and RadiomicsTransformer both parallelize with joblib, so under
``joblib.parallel_config(backend="dask")`` their tasks run on the Dask workers. These
tests start a two-worker LocalCluster (worker processes, as on a real cluster) and check
that a grouped grid search and a radiomics extraction give exactly what they give locally.
"""

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import GridSearchCV, GroupKFold

from hiercls import RadiomicsTransformer, make_fusion_pipeline
from hiercls.data.datasets import make_synthetic_tiles

from .conftest import TINY_CLASSIFIER

distributed = pytest.importorskip(
    "dask.distributed", reason="dask.distributed is not installed (pip install 'hiercls[dask]')")


@pytest.fixture(scope="module")
def client():
    # Worker processes (not threads): tasks are pickled and run in other interpreters, as
    # on a cluster. One thread per worker, so torch computes as in a local process with
    # one thread (the reference runs below pin that too).
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as dask_client:
        # Import hiercls (and torch) on the workers once, before the timed work.
        dask_client.run(lambda: __import__("hiercls") and None)
        yield dask_client


@pytest.fixture(scope="module")
def tiles():
    X, y, groups = make_synthetic_tiles(n_tiles=24, n_patients=3, size=32, random_state=0)
    return X[["image"]], y, groups


def test_radiomics_under_dask_backend_match_local(client, tiles):
    X, _, _ = tiles
    local = RadiomicsTransformer(mask="full", cache=None).fit_transform(X)
    with distributed.get_task_stream(client) as tasks, joblib.parallel_config(backend="dask"):
        remote = RadiomicsTransformer(mask="full", cache=None, n_jobs=-1).fit_transform(X)
    assert len({task["worker"] for task in tasks.data}) == 2      # both workers took tiles
    pd.testing.assert_frame_equal(remote.drop(columns="image"), local.drop(columns="image"),
                                  check_exact=True)
    assert remote.index.equals(X.index)


def test_grouped_grid_search_under_dask_backend_matches_local(client, tiles):
    import torch

    X, y, groups = tiles
    pipeline = make_fusion_pipeline(preset="none", **TINY_CLASSIFIER, radiomics__mask="full",
                                    radiomics__cache=None)
    grid = {"classifier__lr": [1e-3, 3e-2]}

    def search(n_jobs):
        return GridSearchCV(pipeline, grid, cv=GroupKFold(n_splits=3), n_jobs=n_jobs)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as on the one-thread workers
    try:
        local = search(n_jobs=1).fit(X, y, groups=groups)
    finally:
        torch.set_num_threads(threads)
    with distributed.get_task_stream(client) as tasks, joblib.parallel_config(backend="dask"):
        remote = search(n_jobs=-1).fit(X, y, groups=groups)
    assert len({task["worker"] for task in tasks.data}) == 2      # the fits ran on the cluster
    assert remote.best_params_ == local.best_params_
    for key in ("mean_test_score", "std_test_score", "split0_test_score",
                "split1_test_score", "split2_test_score"):
        np.testing.assert_array_equal(remote.cv_results_[key], local.cv_results_[key])
