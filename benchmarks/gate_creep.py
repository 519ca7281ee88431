"""How far in-situ training leaves devices above their gate's compliance.

Trains the airline config in situ for seeds 0..n-1 with each SET rule of the
gate-voltage scheme (a SET leaves a device above its compliance alone, or, as
in the memNN simulator, adds programming noise to it as well) and reports, over
the devices of the network, the excess ``G - G_set(Vg)`` of the final
conductance over the compliance of the device's final gate voltage.

    python benchmarks/gate_creep.py --seeds 5

Results go to ``benchmarks/results/gate_creep.json``.
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
from _common import write_result

from crossbar.programming import GateVoltageScheme
from lstm_hw.config import load_config
from lstm_hw.experiment import Experiment


def excess(seed: int, unswitched_noise: bool, overrides) -> tuple[np.ndarray, float]:
    """Final ``G - G_set(Vg)`` [S] of the network's devices, and the RMSE."""
    cfg = load_config(
        "airline",
        [
            *overrides,
            f"seed={seed}",
            'modes=["insitu"]',
            f"insitu.unswitched_noise={str(unswitched_noise).lower()}",
        ],
    )
    exp = Experiment(cfg)
    rmse = exp.run_mode("insitu").metrics["test_rmse"]
    hw = exp.hardware["insitu"]
    scheme = GateVoltageScheme()
    out = []
    for k, used in enumerate(hw.device_masks()):
        g = hw.chip.arrays[k].devices.conductance()[used]
        out.append(g - scheme.g_set(hw.chip.gate_states[k].v_gate[used]))
    return np.concatenate(out), rmse


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    summary = {"config": "airline", "overrides": args.set, "seeds": args.seeds}
    print(
        "| SET on a device above its compliance | mean excess (uS) | "
        "99th percentile (uS) | largest (uS) | median RMSE |"
    )
    print("|---|---|---|---|---|")
    for unswitched_noise, label in ((False, "leaves it alone"), (True, "adds noise")):
        runs = [excess(s, unswitched_noise, args.set) for s in range(args.seeds)]
        e = np.concatenate([r[0] for r in runs]) * 1e6
        row = {
            "mean_uS": float(e.mean()),
            "p99_uS": float(np.percentile(e, 99)),
            "max_uS": float(e.max()),
            "median_rmse": float(np.median([r[1] for r in runs])),
        }
        summary["unswitched_noise" if unswitched_noise else "default"] = row
        print(
            f"| {label} | {row['mean_uS']:.1f} | {row['p99_uS']:.1f} | "
            f"{row['max_uS']:.1f} | {row['median_rmse']:.1f} |"
        )
    write_result("gate_creep", summary)
    return summary


if __name__ == "__main__":
    main()
