"""Headline results: every mode of a shipped config over several seeds.

Runs ``configs/<name>.toml`` for seeds 0..n-1 (nothing written but the
summary) and reports the median and range of each mode's test metric, the
in-situ to ideal ratio, and the programming pulses.

    python benchmarks/headline.py airline_all_modes --seeds 5
    python benchmarks/headline.py japanese_vowels --seeds 5

Results go to ``benchmarks/results/headline_<config>.json`` (five seeds) or
``headline_<config>_<n>_seeds.json``; each ``--set key=value`` adds
``_<last part of key>-<value>`` to the name.
"""

from __future__ import annotations

import argparse
import logging
import re

import numpy as np
from _common import write_result

from lstm_hw.config import load_config
from lstm_hw.experiment import run_experiment


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    runs = []
    for seed in range(args.seeds):
        cfg = load_config(args.config, [*args.set, f"seed={seed}"])
        runs.append(run_experiment(cfg, None))
    modes = list(runs[0]["modes"])
    metric = next(k for k in runs[0]["modes"][modes[0]] if k.startswith("test_"))
    summary = {
        "config": args.config,
        "overrides": args.set,
        "metric": metric,
        "seeds": args.seeds,
        "modes": {},
    }
    for mode in modes:
        values = np.array([r["modes"][mode][metric] for r in runs])
        pulses = [r["modes"][mode].get("programming_pulses", 0) for r in runs]
        summary["modes"][mode] = {
            "median": float(np.median(values)),
            "min": float(values.min()),
            "max": float(values.max()),
            "values": values.tolist(),
            "median_pulses": float(np.median(pulses)),
            "median_train_seconds": float(
                np.median([r["modes"][mode]["train_seconds"] for r in runs])
            ),
        }
    if "persistence_rmse" in runs[0]:
        summary["persistence_rmse"] = runs[0]["persistence_rmse"]

    print(f"{args.config}: {metric}, {args.seeds} seeds")
    print("| mode | median | min | max | pulses (median) | train s (median) |")
    print("|---|---|---|---|---|---|")
    for mode, s in summary["modes"].items():
        print(
            f"| {mode} | {s['median']:.4g} | {s['min']:.4g} | {s['max']:.4g} | "
            f"{s['median_pulses']:.3g} | {s['median_train_seconds']:.2f} |"
        )
    if "ideal" in summary["modes"] and "insitu" in summary["modes"]:
        ratio = (
            summary["modes"]["insitu"]["median"] / summary["modes"]["ideal"]["median"]
        )
        summary["insitu_over_ideal"] = ratio
        print(f"in situ / ideal (medians): {ratio:.3f}")
    if "persistence_rmse" in summary:
        print(f"persistence forecast: {summary['persistence_rmse']:.4g}")
    suffix = "" if args.seeds == 5 else f"_{args.seeds}_seeds"
    for item in args.set:
        suffix += "_" + re.sub(r"[^A-Za-z0-9.]+", "-", item.split(".")[-1])
    write_result(f"headline_{args.config}{suffix}", summary)
    return summary


if __name__ == "__main__":
    main()
