"""Ideal (floating-point) baselines that the hardware results are compared to.

Reproduces, from a seed, the two software baselines:

- airline passengers, the setup of Li et al. (2019): LSTM(15) on one input,
  Dense(1, sigmoid) on every step, SGD lr 0.01 momentum 0.9, summed MSE,
  800 epochs of one full-sequence batch; test RMSE (thousands of
  passengers) on the last 48 months next to the persistence forecast;
- Japanese Vowels: LSTM(14) on 12 standardised inputs, Dense(9, softmax)
  at each sequence's last valid step, cross-entropy, RMSprop lr 0.01,
  batch 50, 50 epochs; test accuracy.

Each run ``k`` uses ``numpy.random.default_rng(seed + k)`` for the initial
weights (LSTM first, then Dense) and for the training loop; the metric is
the one after the last epoch (no selection on the test set). The medians
over the runs are reported.

Usage::

    python benchmarks/baselines.py [--seed 0] [--runs 5]

Prints a markdown table and writes ``benchmarks/results/baselines.json``.
"""

from __future__ import annotations

import argparse
import logging
import platform
import statistics
import time
from pathlib import Path

import numpy as np
from _common import RESULTS, write_result

from lstm_hw import LSTM, Dense, Network
from lstm_hw.data import load_airline, load_japanese_vowels, persistence_rmse
from lstm_hw.losses import CrossEntropyLoss, MSELoss
from lstm_hw.optimizers import SGD, RMSprop
from lstm_hw.training import train

logger = logging.getLogger("baselines")


AIRLINE = {
    "hidden": 15,
    "lr": 0.01,
    "momentum": 0.9,
    "loss": "MSE, reduction sum",
    "epochs": 800,
    "batch_size": 1,
}
VOWELS = {
    "hidden": 14,
    "lr": 0.01,
    "alpha": 0.99,
    "eps": 1e-8,
    "loss": "cross-entropy, reduction mean",
    "epochs": 50,
    "batch_size": 50,
}


def run_airline(seed: int, epochs: int) -> dict:
    ds = load_airline()
    rng = np.random.default_rng(seed)
    net = Network(
        LSTM(1, AIRLINE["hidden"], rng=rng),
        Dense(AIRLINE["hidden"], 1, "sigmoid", rng=rng),
        output="all",
    )
    opt = SGD(AIRLINE["lr"], momentum=AIRLINE["momentum"])
    t0 = time.perf_counter()
    hist = train(
        net, ds, MSELoss("sum"), opt, epochs, AIRLINE["batch_size"], rng,
        eval_every=epochs,
    )  # fmt: skip
    return {
        "seed": seed,
        "test_rmse": hist.test_metric[-1],
        "final_train_loss": hist.train_loss[-1],
        "seconds": time.perf_counter() - t0,
    }


def run_vowels(seed: int, epochs: int) -> dict:
    ds = load_japanese_vowels()
    rng = np.random.default_rng(seed)
    net = Network(
        LSTM(ds.n_features, VOWELS["hidden"], rng=rng),
        Dense(VOWELS["hidden"], ds.n_classes, "softmax", rng=rng),
        output="last",
    )
    opt = RMSprop(VOWELS["lr"], alpha=VOWELS["alpha"], eps=VOWELS["eps"])
    t0 = time.perf_counter()
    hist = train(
        net, ds, CrossEntropyLoss(), opt, epochs, VOWELS["batch_size"], rng,
        eval_every=epochs,
    )  # fmt: skip
    return {
        "seed": seed,
        "test_accuracy": hist.test_metric[-1],
        "final_train_loss": hist.train_loss[-1],
        "seconds": time.perf_counter() - t0,
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0, help="seed of the first run")
    parser.add_argument("--runs", type=int, default=5, help="runs per data set")
    parser.add_argument("--airline-epochs", type=int, default=AIRLINE["epochs"])
    parser.add_argument("--vowels-epochs", type=int, default=VOWELS["epochs"])
    parser.add_argument("--out", type=Path, default=RESULTS / "baselines.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    seeds = [args.seed + k for k in range(args.runs)]

    airline = []
    for s in seeds:
        airline.append(run_airline(s, args.airline_epochs))
        logger.info("airline seed %d: test RMSE %.2f", s, airline[-1]["test_rmse"])
    vowels = []
    for s in seeds:
        vowels.append(run_vowels(s, args.vowels_epochs))
        logger.info(
            "vowels seed %d: test accuracy %.4f", s, vowels[-1]["test_accuracy"]
        )

    persistence = persistence_rmse(load_airline())
    rmse = [r["test_rmse"] for r in airline]
    acc = [r["test_accuracy"] for r in vowels]
    results = {
        "command": "python benchmarks/baselines.py "
        + f"--seed {args.seed} --runs {args.runs}",
        "seeds": seeds,
        "airline": {
            "config": {**AIRLINE, "epochs": args.airline_epochs},
            "units": "thousands of passengers, last 48 months",
            "persistence_rmse": persistence,
            "median_test_rmse": statistics.median(rmse),
            "runs": airline,
        },
        "japanese_vowels": {
            "config": {**VOWELS, "epochs": args.vowels_epochs},
            "median_test_accuracy": statistics.median(acc),
            "min_test_accuracy": min(acc),
            "max_test_accuracy": max(acc),
            "runs": vowels,
        },
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    write_result("baselines", results, args.out)

    lines = [
        "| data set | metric | median | runs | reference |",
        "| --- | --- | --- | --- | --- |",
        f"| airline (LSTM 15) | test RMSE, thousands of passengers | "
        f"{statistics.median(rmse):.1f} | "
        + ", ".join(f"{v:.1f}" for v in rmse)
        + f" | persistence {persistence:.1f} |",
        f"| Japanese Vowels (LSTM 14) | test accuracy | "
        f"{100 * statistics.median(acc):.1f} % | "
        + ", ".join(f"{100 * v:.1f}" for v in acc)
        + " | target >= 95 % |",
    ]
    print("\n".join(lines))
    return results


if __name__ == "__main__":
    main()
