"""A fitted pipeline on a slide's tiles: predictions, and necrosis per slide and patient."""

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..data.labels import CLASS_NAMES, check_probabilities
from ..evaluation.necrosis import GOOD_RESPONSE, MIN_TUMOR_TILES, necrosis_from_probabilities
from ..features.resolution import MPP_COLUMN, TileResampler
from .reading import (
    MIN_TISSUE,
    ResolutionMismatchWarning,
    _level0_mpp,
    _mpp_known,
    _name,
    _resolution_step,
    iter_tile_batches,
    model_resolution,
    open_slide,
    resolve_model_resolution,
    tile_grid,
)

_GATE_COLUMNS = ("gate_image", "gate_radiomics")


# --------------------------------------------------------------------------------------
# Predicting

def _input_columns(pipeline):
    first = pipeline.steps[0][1] if hasattr(pipeline, "steps") else pipeline
    columns = list(getattr(first, "feature_names_in_", ["image"]))
    if isinstance(first, TileResampler) and MPP_COLUMN not in columns:
        # The tiles' declared resolution, which TileResampler reads and then drops.
        columns.append(MPP_COLUMN)
    return columns


def _without_caches(pipeline, cache):
    """The pipeline with every step's ``cache`` set to ``cache``: shallow copies of the
    steps that have one, the fitted state shared, the caller's pipeline untouched."""
    if not hasattr(pipeline, "steps"):
        steps = [pipeline]
    else:
        steps = [step for _, step in pipeline.steps]
    copies = []
    for step in steps:
        if "cache" in getattr(step, "__dict__", {}):
            # A shallow copy by hand: copy.copy of a skorch net goes through its pickling
            # (torch.save of the module). A plain attribute: set_params may reinitialize.
            shallow = object.__new__(type(step))
            shallow.__dict__.update(step.__dict__)
            shallow.cache = cache
            step = shallow
        copies.append(step)
    if not hasattr(pipeline, "steps"):
        return copies[0]
    shallow = object.__new__(type(pipeline))
    shallow.__dict__.update(pipeline.__dict__)
    shallow.steps = [(name, step) for (name, _), step in zip(pipeline.steps, copies)]
    return shallow


def _predict_batch(pipeline, batch, gates):
    columns = _input_columns(pipeline)
    missing = [c for c in columns if c not in batch.columns]
    if missing:
        raise ValueError(f"the pipeline was fitted on the columns {columns}; slide tiles have "
                         f"only image, x, y, extent, tissue and mpp")
    X = batch[columns]
    classifier = pipeline.steps[-1][1] if hasattr(pipeline, "steps") else pipeline
    if gates and hasattr(classifier, "predict_proba_and_gates"):
        # Features once, then one pass of the network for both.
        features = pipeline[:-1].transform(X) if hasattr(pipeline, "steps") else X
        proba, weights = classifier.predict_proba_and_gates(features)
        weights = weights.to_numpy()
    else:
        proba = pipeline.predict_proba(X)
        weights = np.full((len(X), 2), np.nan)
    return np.asarray(proba, dtype=float), weights


def predict_slide(pipeline, slide, *, mpp=None, tile_size=None, batch_size=64, slide_mpp=None,
                  min_tissue=MIN_TISSUE, gates=True, cache=None, verbose=1):
    """Classify every tissue tile of a slide.

    Parameters
    ----------
    pipeline : fitted estimator with ``predict_proba``
        Usually a fitted :func:`hiercls.make_fusion_pipeline`, taking ``X`` with an
        ``image`` column.
    slide : path or openslide.OpenSlide
    mpp, tile_size : float and int, or None
        The model's resolution and tile side; None takes what the pipeline declares
        (:func:`model_resolution`) or :data:`DEFAULT_RESOLUTION`. A pipeline trained on
        tiles that declared no mpp needs ``mpp`` (see :func:`resolve_model_resolution`).
        Values that disagree with what the pipeline declares give a
        :class:`ResolutionMismatchWarning`: the model then sees another field of view.
    batch_size : int, default=64
        Tiles read and predicted at a time.
    slide_mpp : float or None, default=None
        The slide's level-0 resolution, when the file does not declare it.
    min_tissue : float, default=MIN_TISSUE
        As in :func:`tile_grid`.
    gates : bool, default=True
        Also return the gate weights (from the same pass of the network as the
        probabilities, :meth:`~hiercls.HierarchicalFusionClassifier.predict_proba_and_gates`).
    cache : None, "auto" or path, default=None
        The feature caches of the pipeline's steps (radiomics, frozen-backbone embeddings)
        while predicting the slide: None turns them off, since a slide's tiles are seen
        once and would fill the disk (about 40 KB per tile); "auto" or a folder uses that
        cache. The pipeline itself is left as it is.
    verbose : int, default=1
        A progress bar over the tiles; 0 is silent.

    Returns
    -------
    DataFrame
        One row per tissue tile: ``x``, ``y`` (level-0 top-left corner), ``extent``,
        ``tissue``, ``Non-Tumor``, ``Non-Viable-Tumor``, ``Viable-Tumor`` (probabilities),
        ``predicted`` (the most probable class), ``gate_image`` and ``gate_radiomics``
        (NaN for a model without gates or with ``gates=False``). Its ``attrs`` hold the
        ``slide`` path, ``mpp``, ``tile_size``, ``slide_mpp`` and ``dimensions``.
    """
    if not hasattr(pipeline, "predict_proba"):
        raise TypeError(f"pipeline must be a fitted estimator with predict_proba; got "
                        f"{type(pipeline).__name__}")
    slide = open_slide(slide)
    declared = model_resolution(pipeline)
    requested = (mpp, tile_size)
    mpp, tile_size = resolve_model_resolution(pipeline, mpp, tile_size)
    if declared is not None:
        known = _mpp_known(_resolution_step(pipeline))
        differ = ((requested[0] is not None and known and not np.isclose(mpp, declared[0]))
                  or (requested[1] is not None and tile_size != declared[1]))
        if differ:
            shown = f"{declared[0]:g} um/px" if known else "an undeclared resolution"
            warnings.warn(f"predict_slide: tiles of {tile_size} px at {mpp:g} um/px for a model "
                          f"trained on tiles of {declared[1]} px at {shown}; the model sees "
                          "another field of view than in training", ResolutionMismatchWarning,
                          stacklevel=2)
    pipeline = _without_caches(pipeline, cache)
    level0_mpp = _level0_mpp(slide, slide_mpp)
    grid = tile_grid(slide, mpp=mpp, tile_size=tile_size, slide_mpp=level0_mpp,
                     min_tissue=min_tissue)
    parts = []
    with tqdm(total=len(grid), desc=f"slide {Path(_name(slide)).name}", unit="tile",
              disable=not verbose) as progress:
        for batch in iter_tile_batches(slide, mpp=mpp, tile_size=tile_size,
                                       batch_size=batch_size, grid=grid):
            proba, weights = _predict_batch(pipeline, batch, gates)
            part = batch.drop(columns=["image", MPP_COLUMN])
            for k, name in enumerate(CLASS_NAMES):
                part[name] = proba[:, k]
            part["predicted"] = np.asarray(CLASS_NAMES, dtype=object)[proba.argmax(axis=1)]
            part[list(_GATE_COLUMNS)] = weights
            parts.append(part)
            progress.update(len(batch))
    if parts:
        table = pd.concat(parts).reset_index(drop=True)
    else:
        table = grid.assign(**{name: pd.Series(dtype=float) for name in CLASS_NAMES},
                            predicted=pd.Series(dtype=object),
                            **{name: pd.Series(dtype=float) for name in _GATE_COLUMNS})
    table.attrs.update(slide=_name(slide), mpp=mpp, tile_size=tile_size,
                       slide_mpp=level0_mpp, dimensions=tuple(slide.dimensions))
    return table


def predict_slides(pipeline, slides, *, n_jobs=None, verbose=1, **kwargs):
    """:func:`predict_slide` over several slides, in parallel with joblib.

    Under ``joblib.parallel_config(backend="dask")`` each slide is a task on the Dask
    cluster (the fitted pipeline is sent to the workers with it).

    Parameters
    ----------
    pipeline : fitted estimator
    slides : list of paths
    n_jobs : int or None, default=None
        joblib's ``n_jobs``; None is one at a time unless a ``parallel_config`` says more.
    verbose : int, default=1
        joblib's progress messages as slides finish (each slide's own bar stays off); 0
        is silent.
    **kwargs
        Passed to :func:`predict_slide`.

    Returns
    -------
    list of DataFrame
        The tiles table of each slide, in the order of ``slides``.
    """
    from joblib import Parallel, delayed

    slides = [str(s) if isinstance(s, os.PathLike) else s for s in slides]
    tasks = (delayed(predict_slide)(pipeline, s, verbose=0, **kwargs) for s in slides)
    return Parallel(n_jobs=n_jobs, verbose=10 if verbose else 0)(tasks)


# --------------------------------------------------------------------------------------
# Necrosis

def _check_tiles(tiles, name="tiles"):
    # extent draws each tile's box on the maps.
    needed = ["x", "y", "extent", *CLASS_NAMES]
    if not isinstance(tiles, pd.DataFrame) or any(c not in tiles.columns for c in needed):
        raise ValueError(f"{name} must be a DataFrame with the columns {needed}, as "
                         "predict_slide returns")
    if len(tiles):  # a slide without tissue has no tiles, and no probabilities to check
        check_probabilities(tiles, name=f"{name}'s class columns")
    return tiles


def slide_necrosis(tiles, *, name=None, method="auto", quantifier=None, n_bootstrap=1000,
                   confidence=0.95, threshold=GOOD_RESPONSE, min_tumor_tiles=MIN_TUMOR_TILES,
                   random_state=0):
    """The necrotic fraction of the tumor on one slide, with a bootstrap interval.

    Parameters
    ----------
    tiles : DataFrame
        What :func:`predict_slide` returned.
    name : str or None, default=None
        The row's label; None uses the slide's file name (``tiles.attrs["slide"]``).
    method, quantifier, n_bootstrap, confidence, threshold, min_tumor_tiles, random_state
        As in :func:`hiercls.evaluation.necrosis.necrosis_from_probabilities` (a model
        file's ``necrosis_quantifier_`` is the usual ``quantifier``).

    Returns
    -------
    DataFrame
        One row indexed by ``slide``, with the columns of
        :func:`~hiercls.evaluation.necrosis.necrosis_from_probabilities`. A slide without tissue tiles
        has ``n_tiles`` 0, NaN fractions and the response ``"no tumor"``.
    """
    _check_tiles(tiles)
    if name is None:
        name = Path(str(tiles.attrs.get("slide", "slide"))).name
    return patient_necrosis({name: tiles}, {name: name}, method=method, quantifier=quantifier,
                            n_bootstrap=n_bootstrap, confidence=confidence,
                            threshold=threshold, min_tumor_tiles=min_tumor_tiles,
                            random_state=random_state, index_name="slide")


def patient_necrosis(slides, patients=None, *, method="auto", quantifier=None, n_bootstrap=1000,
                     confidence=0.95, threshold=GOOD_RESPONSE, min_tumor_tiles=MIN_TUMOR_TILES,
                     random_state=0, index_name="patient"):
    """The necrotic fraction of each patient over all of their slides.

    The patient's tiles are pooled (a slide with more tumor weighs more), and the bootstrap
    resamples the pooled tiles.

    Parameters
    ----------
    slides : dict of str to DataFrame
        Each slide's name and its :func:`predict_slide` table.
    patients : dict of str to str, or None, default=None
        The patient of each slide; None pools all slides as one patient named by
        ``index_name``.
    method, quantifier, n_bootstrap, confidence, threshold, min_tumor_tiles, random_state
        As in :func:`hiercls.evaluation.necrosis.necrosis_from_probabilities`.
    index_name : str, default="patient"

    Returns
    -------
    DataFrame
        One row per patient (sorted), columns as in
        :func:`~hiercls.evaluation.necrosis.necrosis_from_probabilities`.
    """
    if not isinstance(slides, dict) or not slides:
        raise ValueError("slides must be a non-empty dict of slide name to predict_slide table")
    if patients is not None:
        absent = [s for s in slides if s not in patients]
        if absent:
            raise ValueError(f"patients gives no patient for the slide(s) {absent}")
    frames, groups, empty = [], [], []
    for name, tiles in slides.items():
        _check_tiles(tiles, f"slides[{name!r}]")
        group = index_name if patients is None else patients[name]
        if len(tiles):
            frames.append(tiles[list(CLASS_NAMES)])
            groups.extend([group] * len(tiles))
        else:
            empty.append(group)
    if frames:
        table = necrosis_from_probabilities(
            pd.concat(frames), pd.Series(groups, name=index_name), method=method,
            quantifier=quantifier, n_bootstrap=n_bootstrap,
            confidence=confidence, threshold=threshold, min_tumor_tiles=min_tumor_tiles,
            random_state=random_state)
    else:
        table = necrosis_from_probabilities([[1.0, 0.0, 0.0]], pd.Series(["_"], name=index_name),
                                            method=method, quantifier=quantifier,
                                            n_bootstrap=0).iloc[:0]
    # Patients whose slides hold no tissue tile at all: a row saying so.
    missing = sorted(set(empty) - set(table.index))
    if missing:
        row = {c: np.nan for c in table.columns}
        row.update(n_tiles=0, expected_tumor_tiles=0.0, expected_necrotic_tiles=0.0,
                   argmax_tumor_tiles=0, response="no tumor")
        # Typed like the table, so that an empty table's text columns stay text.
        rows = pd.DataFrame([row] * len(missing), columns=table.columns,
                            index=pd.Index(missing, name=table.index.name))
        table = pd.concat([table, rows.astype(table.dtypes.to_dict())])
    return table.sort_index()


