"""The ``hiercls`` command line: ``hiercls demo`` and the data commands."""

import argparse
import sys
import time

import pandas as pd


def _format_summary(scores):
    from .evaluation import summarize_scores

    table = scores.T.copy()
    summary = summarize_scores(scores)
    table["mean ± sd"] = [
        "n/a" if n == 0 else f"{m:.3f} ± {s:.3f}" if n > 1 else f"{m:.3f}"
        for m, s, n in zip(summary["mean"], summary["sd"].fillna(0.0), summary["n_folds"])
    ]
    table["folds"] = summary["n_folds"]
    return table


def run_demo(args):
    """Patient-grouped cross-validation of the full model on generated tiles."""
    import hiercls
    from .evaluation import cross_validate_by_patient

    verbose = 0 if args.quiet else 1
    started = time.perf_counter()
    X, y, groups = hiercls.datasets.make_synthetic_tiles(
        n_tiles=args.n_tiles, n_patients=args.n_patients, size=args.size, random_state=args.seed)
    pipeline = hiercls.make_fusion_pipeline(
        backbone=args.backbone, pretrained=False, image_size=args.size, embed_dim=64,
        max_epochs=args.max_epochs, lr=args.lr, random_state=args.seed, verbose=0,
        radiomics__cache=None, radiomics__n_jobs=args.n_jobs, radiomics__mask="tissue",
    )
    if verbose:
        print(f"hiercls demo: {len(X)} synthetic tiles of {args.size} px from "
              f"{args.n_patients} patients; backbone {args.backbone}, {args.max_epochs} epochs; "
              "leave-one-patient-out cross-validation")
    scores = cross_validate_by_patient(pipeline, X, y, groups, verbose=verbose).scores
    with pd.option_context("display.width", 200, "display.max_columns", 20,
                           "display.float_format", "{:.3f}".format):
        print(_format_summary(scores).to_string())
    if verbose:
        print(f"done in {time.perf_counter() - started:.0f} s")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(
        prog="hiercls",
        description="Hierarchical image + radiomics classification of osteosarcoma H&E tiles.")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser(
        "demo", help="grouped cross-validation on built-in synthetic tiles, printing the metrics")
    demo.add_argument("--n-tiles", type=int, default=240)
    demo.add_argument("--n-patients", type=int, default=4)
    demo.add_argument("--size", type=int, default=64, help="tile side in pixels")
    demo.add_argument("--backbone", default="resnet18", help="timm model name")
    demo.add_argument("--max-epochs", type=int, default=8)
    demo.add_argument("--lr", type=float, default=1e-3)
    demo.add_argument("--n-jobs", type=int, default=1, help="processes for radiomics")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--quiet", action="store_true", help="print only the table")
    demo.set_defaults(handler=run_demo)
    return parser


def main(argv=None):
    """Entry point of the ``hiercls`` command."""
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
