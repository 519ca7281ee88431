"""Figures of a run: training curves, predictions, confusion matrices,
conductance maps before and after training, and the IR-drop error map."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

COLORS = {
    "ideal": "tab:blue",
    "offline": "tab:orange",
    "offline_aware": "tab:green",
    "insitu": "tab:red",
}


def _save(fig, path: Path) -> None:
    from lstm_hw.results import save_figure

    save_figure(fig, path)


def training_curves(results: dict, metric: str):
    """Training loss and test metric of every mode against the epoch."""
    fig = Figure(figsize=(10, 3.8))
    ax_loss, ax_metric = fig.subplots(1, 2)
    for mode, res in results.items():
        h = res.history
        epochs = np.asarray(h.epoch) + 1
        color = COLORS.get(mode)
        ax_loss.plot(epochs, h.train_loss, label=mode, color=color)
        values = np.asarray(h.test_metric, dtype=float)
        ok = ~np.isnan(values)
        ax_metric.plot(epochs[ok], values[ok], label=mode, color=color, marker=".")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss")
    ax_loss.set_yscale("log")
    ax_metric.set_xlabel("epoch")
    ax_metric.set_ylabel(metric.replace("_", " "))
    if "rmse" in metric:
        ax_metric.set_yscale("log")
    ax_metric.legend()
    fig.tight_layout()
    return fig


def predictions(results: dict, dataset):
    """Per-step regression: every mode's predictions against the truth."""
    fig = Figure(figsize=(9, 4))
    ax = fig.subplots()
    first = next(iter(results.values()))
    truth = np.asarray(first.predictions["targets"])[0].ravel()
    ax.plot(truth, color="black", lw=2, label="truth")
    for mode, res in results.items():
        pred = np.asarray(res.predictions["predictions"])[0].ravel()
        ax.plot(pred, color=COLORS.get(mode), lw=1.2, label=mode)
    if dataset.test_start:
        ax.axvline(dataset.test_start, color="grey", ls="--", lw=1)
        ax.text(dataset.test_start, ax.get_ylim()[1], " test", va="top")
    ax.set_xlabel("step")
    ax.set_ylabel("value")
    ax.legend()
    fig.tight_layout()
    return fig


def confusion_matrices(results: dict, n_classes: int):
    """One confusion matrix (true class against predicted) per mode."""
    n = len(results)
    fig = Figure(figsize=(3.4 * n, 3.4))
    axes = fig.subplots(1, n, squeeze=False)
    for ax, (mode, res) in zip(axes[0], results.items(), strict=True):
        pred = np.asarray(res.predictions["predictions"]).ravel()
        true = np.asarray(res.predictions["targets"]).ravel()
        cm = np.zeros((n_classes, n_classes), dtype=int)
        np.add.at(cm, (true, pred), 1)
        ax.imshow(cm, cmap="Blues")
        acc = res.metrics.get("test_accuracy", math.nan)
        ax.set_title(f"{mode} ({acc:.1%})")
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
    fig.tight_layout()
    return fig


def conductance_maps(states: dict[str, np.ndarray], title: str):
    """Conductance [uS] of every array in each labelled state, side by side.

    ``states`` maps a label ("before", "after", ...) to conductances of shape
    (arrays, rows, cols) [S].
    """
    labels = list(states)
    n = next(iter(states.values())).shape[0]
    rows, cols = next(iter(states.values())).shape[1:]
    width = 2.2 + 3.0 * len(labels) * min(cols / rows, 2.0)
    fig = Figure(figsize=(width, 3.6 * n), layout="constrained")
    axes = fig.subplots(n, len(labels), squeeze=False)
    vmax = 1e6 * max(float(g.max()) for g in states.values())
    for k in range(n):
        for j, label in enumerate(labels):
            g = states[label]
            im = axes[k, j].imshow(1e6 * g[k], vmin=0, vmax=vmax, cmap="viridis")
            axes[k, j].set_title(f"array {k}, {label}")
            axes[k, j].set_xlabel("column")
            axes[k, j].set_ylabel("row")
    fig.colorbar(im, ax=axes, label="conductance (uS)", shrink=0.8)
    fig.suptitle(title)
    return fig


def ir_drop_map(error: np.ndarray, title: str):
    """(G_eff - G) / max G of every array: where the wires cost the most."""
    n = error.shape[0]
    fig = Figure(figsize=(4.5 * n, 3.4))
    axes = fig.subplots(1, n, squeeze=False)
    for k in range(n):
        im = axes[0, k].imshow(100 * error[k], cmap="magma_r")
        axes[0, k].set_title(f"array {k}")
        axes[0, k].set_xlabel("column")
        axes[0, k].set_ylabel("row")
        fig.colorbar(im, ax=axes[0, k], label="(G_eff - G) / max G (%)")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def save_plots(exp, run_dir) -> list[Path]:
    """Write every figure that applies to the run; return their paths."""
    run_dir = Path(run_dir)
    results = {m: exp.results[m] for m in exp.cfg.modes}
    ds = exp.dataset
    written = []
    metric = next(iter(results.values())).history.metric
    figures = [("training_curves.png", training_curves(results, metric))]
    if ds.task == "regression" and ds.per_step:
        figures.append(("predictions.png", predictions(results, ds)))
    if ds.task == "classification":
        figures.append(("confusion.png", confusion_matrices(results, ds.n_classes)))
    for mode, res in results.items():
        snaps = res.snapshots
        states = {k: snaps[k] for k in ("before", "after", "programmed") if k in snaps}
        if states:
            title = f"{mode}: conductances"
            figures.append((f"conductance_{mode}.png", conductance_maps(states, title)))
        if "ir_drop_error" in snaps:
            figures.append(
                (
                    f"ir_drop_error_{mode}.png",
                    ir_drop_map(snaps["ir_drop_error"], f"IR drop, {mode}"),
                )
            )
    for name, fig in figures:
        _save(fig, run_dir / name)
        written.append(run_dir / name)
    logger.info("wrote %d figures", len(written))
    return written
