"""One training step of lstm_hw against PyTorch at the paper's two shapes.

A step is forward, loss, BPTT and the optimizer update of every parameter.
Both sides run in this process on one thread (``torch.set_num_threads(1)`` and
threadpoolctl for numpy's BLAS). PyTorch is timed in its default float32 and in
float64, the precision lstm_hw always uses.

Shapes:

- airline: LSTM(1 -> 15), 96 steps, batch 1, sigmoid output at every step,
  summed squared error, SGD (lr 0.01, momentum 0.9);
- gait: LSTM(50 -> 14), 30 steps, batch 50, softmax over 10 classes on the
  last step, cross-entropy, RMSprop (lr 0.01).

Run ``python benchmarks/bench_lstm_step.py``; it prints a markdown table of
time ratios (lstm_hw / PyTorch, below 1 means lstm_hw is faster) and writes
``benchmarks/results/lstm_step.json``.
"""

from __future__ import annotations

import os

# One thread everywhere, set before numpy, scipy (numba's BLAS) and torch load
# their thread pools; threadpoolctl below enforces it again at run time.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import logging  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import scipy.linalg.cython_blas  # noqa: E402, F401 (numba's BLAS, pinned below)
from _common import write_result  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from lstm_hw import LSTM, Dense, Network  # noqa: E402
from lstm_hw.losses import CrossEntropyLoss, MSELoss  # noqa: E402
from lstm_hw.optimizers import SGD, RMSprop  # noqa: E402

logger = logging.getLogger(__name__)

REPEATS = 15

SHAPES = {
    "airline": {
        "inputs": 1,
        "hidden": 15,
        "steps": 96,
        "batch": 1,
        "outputs": 1,
        "output": "all",
        "loops": 200,
    },
    "gait": {
        "inputs": 50,
        "hidden": 14,
        "steps": 30,
        "batch": 50,
        "outputs": 10,
        "output": "last",
        "loops": 40,
    },
}


def _best(steps: dict, loops: int) -> dict:
    """Best mean time [s] of ``loops`` calls of each step over REPEATS rounds.

    The contenders alternate round by round, so that load from other
    processes on a shared machine hits them alike.
    """
    for step in steps.values():
        for _ in range(max(3, loops // 10)):
            step()
    best = dict.fromkeys(steps, np.inf)
    for _ in range(REPEATS):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(loops):
                step()
            best[name] = min(best[name], (time.perf_counter() - start) / loops)
    return best


def _data(shape: dict, rng: np.random.Generator):
    x = rng.standard_normal((shape["batch"], shape["steps"], shape["inputs"]))
    if shape["output"] == "all":
        y = rng.uniform(0.1, 0.9, (shape["batch"], shape["steps"], shape["outputs"]))
    else:
        y = rng.integers(0, shape["outputs"], shape["batch"])
    return x, y


def lstm_hw_step(shape: dict, x, y):
    """A closure running one lstm_hw training step, plus its phase timer."""
    rng = np.random.default_rng(0)
    regression = shape["output"] == "all"
    net = Network(
        LSTM(shape["inputs"], shape["hidden"], rng=rng),
        Dense(
            shape["hidden"],
            shape["outputs"],
            "sigmoid" if regression else "softmax",
            rng=rng,
        ),
        output=shape["output"],
    )
    loss = MSELoss("sum") if regression else CrossEntropyLoss()
    opt = SGD(0.01, momentum=0.9) if regression else RMSprop(0.01)
    params, grads = net.params(), net.grads()

    def step():
        out = net.forward(x)
        _, dy = loss(out, y)
        net.backward(dy)
        opt.step(params, grads)

    def phases(loops: int) -> dict:
        t = {"forward": np.inf, "loss": np.inf, "backward": np.inf, "optimizer": np.inf}
        for _ in range(loops):
            t0 = time.perf_counter()
            out = net.forward(x)
            t1 = time.perf_counter()
            _, dy = loss(out, y)
            t2 = time.perf_counter()
            net.backward(dy)
            t3 = time.perf_counter()
            opt.step(params, grads)
            t4 = time.perf_counter()
            for k, v in zip(t, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                t[k] = min(t[k], v)
        return t

    return step, phases


def torch_step(torch, shape: dict, x, y, dtype):
    """A closure running the equivalent PyTorch training step."""
    torch.manual_seed(0)
    regression = shape["output"] == "all"
    lstm = torch.nn.LSTM(shape["inputs"], shape["hidden"], batch_first=True)
    linear = torch.nn.Linear(shape["hidden"], shape["outputs"])
    lstm.to(dtype)
    linear.to(dtype)
    params = list(lstm.parameters()) + list(linear.parameters())
    opt = (
        torch.optim.SGD(params, lr=0.01, momentum=0.9)
        if regression
        else torch.optim.RMSprop(params, lr=0.01, alpha=0.99, eps=1e-8)
    )
    xt = torch.tensor(x, dtype=dtype)
    yt = torch.tensor(y, dtype=dtype if regression else torch.int64)

    def step():
        opt.zero_grad()
        out, (h_n, _) = lstm(xt)
        if regression:
            value = ((torch.sigmoid(linear(out)) - yt) ** 2).sum()
        else:
            value = torch.nn.functional.cross_entropy(linear(h_n[0]), yt)
        value.backward()
        opt.step()

    return step


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        import torch
    except ImportError:
        logger.error("PyTorch is needed: pip install torch==2.13.0")
        return 1
    torch.set_num_threads(1)
    results = {
        "machine": platform.processor() or platform.machine(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "threads": 1,
        "repeats": REPEATS,
        "shapes": {},
    }
    with threadpool_limits(limits=1):
        for name, shape in SHAPES.items():
            x, y = _data(shape, np.random.default_rng(1))
            ours, phases = lstm_hw_step(shape, x, y)
            times = _best(
                {
                    "ours": ours,
                    "f32": torch_step(torch, shape, x, y, torch.float32),
                    "f64": torch_step(torch, shape, x, y, torch.float64),
                },
                shape["loops"],
            )
            t_ours, t32, t64 = times["ours"], times["f32"], times["f64"]
            results["shapes"][name] = {
                **{k: v for k, v in shape.items() if k != "loops"},
                "lstm_hw_s": t_ours,
                "torch_float32_s": t32,
                "torch_float64_s": t64,
                "ratio_vs_float32": t_ours / t32,
                "ratio_vs_float64": t_ours / t64,
                "lstm_hw_phases_s": phases(shape["loops"]),
            }
    lines = [
        "| shape | lstm_hw [ms] | torch f32 [ms] | torch f64 [ms] "
        "| ratio vs f32 | ratio vs f64 |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in results["shapes"].items():
        lines.append(
            f"| {name} | {1e3 * r['lstm_hw_s']:.3f} | {1e3 * r['torch_float32_s']:.3f}"
            f" | {1e3 * r['torch_float64_s']:.3f} | {r['ratio_vs_float32']:.2f}"
            f" | {r['ratio_vs_float64']:.2f} |"
        )
    lines.append("")
    lines.append("ratio = lstm_hw time / PyTorch time (below 1: lstm_hw is faster)")
    sys.stdout.write("\n".join(lines) + "\n")
    logger.info("wrote %s", write_result("lstm_step", results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
