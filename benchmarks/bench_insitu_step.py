"""One in-situ training step against the ideal step, in the same process.

A step is what the training loop does per mini-batch: the forward pass, the
loss, BPTT and the weight update. Ideal: exact weights, optimizer step in
software. In situ: the forward pass reads the crossbar (a fresh read plan of
the programmed state), BPTT runs on the weights read back from the devices,
and the update is written with the 1T1R gate-voltage scheme of Li et al.
(2019), after which the weights are read back again. With IR drop, every
update is followed by the exact circuit solve of the new state.

Shapes: airline (1 input, 15 hidden, 96 steps, batch 1, output every step) and
gait (50 inputs, 14 hidden, 30 steps, batch 50, 9 classes at the last step).

    python benchmarks/bench_insitu_step.py
"""

from __future__ import annotations

from functools import partial

import numpy as np
from _common import interleaved_best_times, write_result
from threadpoolctl import threadpool_limits

from crossbar.array import ArrayParams
from crossbar.device import DeviceParams
from crossbar.differential import DifferentialMapping
from crossbar.programming import GateVoltageScheme
from crossbar.tiling import Chip
from lstm_hw import LSTM, Dense
from lstm_hw.hardware import HardwareNetwork
from lstm_hw.losses import CrossEntropyLoss, MSELoss
from lstm_hw.network import Network
from lstm_hw.optimizers import SGD

SHAPES = {
    "airline": dict(n_x=1, hidden=15, steps=96, batch=1, out=1, last=False),
    "gait": dict(n_x=50, hidden=14, steps=30, batch=50, out=9, last=True),
}


def _setup(shape: dict, r_wire: float | None):
    rng = np.random.default_rng(0)
    act = "softmax" if shape["last"] else "sigmoid"
    net = Network(
        LSTM(shape["n_x"], shape["hidden"], rng=rng),
        Dense(shape["hidden"], shape["out"], activation=act, rng=rng),
        output="last" if shape["last"] else "all",
    )
    x = rng.uniform(0, 1, size=(shape["batch"], shape["steps"], shape["n_x"]))
    if shape["last"]:
        y = rng.integers(0, shape["out"], size=shape["batch"])
        loss = CrossEntropyLoss()
    else:
        y = rng.uniform(0, 1, size=(shape["batch"], shape["steps"], 1))
        loss = MSELoss(reduction="sum")
    hw = None
    if r_wire is not None:
        params = ArrayParams(r_row=r_wire, r_col=r_wire) if r_wire else ArrayParams()
        chip = Chip(params, DeviceParams.li2019(), rng)
        mapping = DifferentialMapping(reference="center")
        placement = "paper" if not shape["last"] else "tiled"
        hw = HardwareNetwork(net, chip, mapping, placement=placement)
        hw.program(GateVoltageScheme())
        hw.load_into_network()
    return net, x, y, loss, hw


def _ideal_step(net, x, y, loss, opt):
    out = net.forward(x)
    _, dy = loss(out, y)
    net.backward(dy)
    opt.step(net.params(), net.grads())


def _insitu_step(net, x, y, loss, opt, hw, scheme, seed):
    out = net.forward(x, plans=hw.plans(), seed=seed)
    _, dy = loss(out, y)
    net.backward(dy)
    before = net.combined_matrices()
    opt.step(net.params(), net.grads())
    after = net.combined_matrices()
    hw.apply_update({k: after[k] - before[k] for k in after}, scheme)
    hw.load_into_network()


def main(rounds: int = 5) -> dict:
    results = {}
    scheme = GateVoltageScheme()
    with threadpool_limits(limits=1):
        for name, shape in SHAPES.items():
            steps, repeats = {}, {"ideal": 20, "insitu": 10, "insitu_ir": 2}
            net, x, y, loss, _ = _setup(shape, None)
            opt = SGD(1e-4, momentum=0.9)
            steps["ideal"] = partial(_ideal_step, net, x, y, loss, opt)
            for label, r in (("insitu", 0.0), ("insitu_ir", 1.0)):
                net, x, y, loss, hw = _setup(shape, r)
                opt = SGD(1e-4, momentum=0.9)
                steps[label] = partial(
                    _insitu_step, net, x, y, loss, opt, hw, scheme, 1
                )
            best = interleaved_best_times(steps, repeats, rounds)
            row = {"ideal_ms": 1e3 * best["ideal"]}
            for label in ("insitu", "insitu_ir"):
                row[f"{label}_ms"] = 1e3 * best[label]
                row[f"{label}_ratio"] = best[label] / best["ideal"]
            results[name] = row
    print(
        "| shape | ideal step (ms) | in situ (ms) | ratio (goal <= 2) "
        "| in situ + IR drop (ms) | ratio (goal <= 5) |"
    )
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        print(
            f"| {name} | {r['ideal_ms']:.3f} | {r['insitu_ms']:.3f} | "
            f"{r['insitu_ratio']:.2f} | {r['insitu_ir_ms']:.2f} | "
            f"{r['insitu_ir_ratio']:.2f} |"
        )
    write_result("insitu_step", results)
    return results


if __name__ == "__main__":
    main()
