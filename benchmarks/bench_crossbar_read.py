"""A crossbar read against a plain numpy matmul of the same shapes.

64 input vectors through a 128 x 64 array with 32 conductance levels,
programming noise, 2 % read noise drawn fresh for every read, an 8-bit DAC
and an 8-bit ADC, against ``v @ g`` in the same process, one BLAS thread.
Also the read without read noise, and with IR drop once ``G_eff`` is known.

    python benchmarks/bench_crossbar_read.py
"""

from __future__ import annotations

import numpy as np
from _common import interleaved_best_times, write_result
from threadpoolctl import threadpool_limits

from crossbar.array import ArrayParams, CrossbarArray
from crossbar.converters import ADC, DAC
from crossbar.device import DeviceParams


def _array(read_noise: float, r_wire: float = 0.0) -> CrossbarArray:
    rng = np.random.default_rng(0)
    device = DeviceParams(
        g_min=1e-6,
        g_max=100e-6,
        n_levels=32,
        prog_noise=0.01,
        prog_noise_mode="relative",
        read_noise=read_noise,
    )
    params = ArrayParams(
        rows=128,
        cols=64,
        r_row=r_wire,
        r_col=r_wire,
        dac=DAC(bits=8, v_max=0.2),
        adc=ADC(bits=8, i_full_scale=128 * 0.2 * 100e-6),
    )
    arr = CrossbarArray(params, device, rng)
    arr.program(rng.uniform(1e-6, 100e-6, size=(128, 64)))
    return arr


def main(rounds: int = 5, repeats: int = 200) -> dict:
    rng = np.random.default_rng(1)
    v = rng.uniform(-0.2, 0.2, size=(64, 128))
    g = _array(0.0).g
    cases = {
        "levels, programming noise, DAC, ADC": _array(0.0),
        "... and 2 % read noise": _array(0.02),
        "... and IR drop at 1 ohm (G_eff known)": _array(0.02, 1.0),
    }
    timed = {"matmul": lambda: v @ g}
    timed.update({label: (lambda arr=arr: arr.read(v)) for label, arr in cases.items()})
    with threadpool_limits(limits=1):
        best = interleaved_best_times(timed, dict.fromkeys(timed, repeats), rounds)
    matmul = best["matmul"]
    rows = {
        label: {"seconds": best[label], "ratio": best[label] / matmul}
        for label in cases
    }
    print("| read of 64 vectors, 128 x 64 | time (us) | ratio to v @ g |")
    print("|---|---|---|")
    print(f"| numpy matmul v @ g | {1e6 * matmul:.1f} | 1.00 |")
    for label, r in rows.items():
        print(f"| {label} | {1e6 * r['seconds']:.1f} | {r['ratio']:.2f} |")
    result = {"matmul_seconds": matmul, "reads": rows}
    write_result("crossbar_read", result)
    return result


if __name__ == "__main__":
    main()
