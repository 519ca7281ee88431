"""Exact IR drop against ngspice operating points of the same netlists."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

from crossbar.ir_drop import output_currents

NGSPICE = shutil.which("ngspice")

pytestmark = [
    pytest.mark.spice,
    pytest.mark.skipif(NGSPICE is None, reason="ngspice is not installed"),
]


def netlist(g, v, r_row, r_col, r_driver=0.0, r_sense=0.0) -> str:
    """A SPICE deck of the crossbar: R elements for wires and devices, a V
    source per row input and a 0 V source at each virtual ground, whose branch
    current is the output."""
    rows, cols = g.shape
    lines = [
        "* crossbar IR drop",
        # A linear circuit is one sparse LU solve; the tight tolerances only
        # make sure the Newton loop does not stop before the solution settles.
        ".options reltol=1e-12 abstol=1e-20 vntol=1e-15 gmin=1e-30",
    ]
    for i in range(rows):
        lines.append(f"Vin{i} s{i} 0 DC {v[i]:.17g}")
        start = f"s{i}"
        if r_driver > 0:
            lines.append(f"Rdrv{i} s{i} d{i} {r_driver:.17g}")
            start = f"d{i}"
        lines.append(f"Rrow{i}_0 {start} r{i}_0 {r_row:.17g}")
        for j in range(1, cols):
            lines.append(f"Rrow{i}_{j} r{i}_{j - 1} r{i}_{j} {r_row:.17g}")
        for j in range(cols):
            lines.append(f"Rdev{i}_{j} r{i}_{j} c{i}_{j} {1.0 / g[i, j]:.17g}")
    for j in range(cols):
        for i in range(1, rows):
            lines.append(f"Rcol{i}_{j} c{i - 1}_{j} c{i}_{j} {r_col:.17g}")
        lines.append(f"Rend{j} c{rows - 1}_{j} e{j} {r_col:.17g}")
        end = f"e{j}"
        if r_sense > 0:
            lines.append(f"Rsns{j} e{j} t{j} {r_sense:.17g}")
            end = f"t{j}"
        lines.append(f"Vsns{j} {end} 0 DC 0")
    lines += [".control", "set numdgt=15", "op"]
    lines += [f"print i(vsns{j})" for j in range(cols)]
    lines += ["quit 0", ".endc", ".end", ""]
    return "\n".join(lines)


_VALUE = re.compile(r"^i\(vsns(\d+)\)\s*=\s*([-+0-9.eE]+)\s*$", re.MULTILINE)


def spice_currents(tmp_path, g, v, *args) -> np.ndarray:
    """Run ngspice in batch mode; return the current into each virtual ground."""
    deck = tmp_path / "crossbar.cir"
    deck.write_text(netlist(g, v, *args))
    done = subprocess.run(
        [NGSPICE, "-b", str(deck)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    found = {int(k): float(x) for k, x in _VALUE.findall(done.stdout)}
    assert sorted(found) == list(range(g.shape[1])), done.stdout[-2000:]
    # The branch current of a SPICE source flows from its + node through it,
    # here from the column end into ground.
    return np.array([found[j] for j in range(g.shape[1])])


CASES = [
    # rows, cols, r_row, r_col, r_driver, r_sense, seed
    (8, 8, 0.5, 2.0, 5.0, 3.0, 1),
    (16, 24, 10.0, 1.0, 0.0, 0.0, 2),
    (32, 32, 1.0, 2.5, 0.0, 10.0, 3),
    (32, 20, 5.0, 0.5, 2.0, 0.0, 4),
]


@pytest.mark.parametrize("rows,cols,r_row,r_col,r_driver,r_sense,seed", CASES)
def test_agrees_with_ngspice(
    tmp_path, rows, cols, r_row, r_col, r_driver, r_sense, seed
):
    rng = np.random.default_rng(seed)
    g = rng.uniform(1e-6, 300e-6, (rows, cols))
    v = rng.uniform(-0.3, 0.3, rows)
    args = (r_row, r_col, r_driver, r_sense)
    expected = spice_currents(tmp_path, g, v, *args)
    got = output_currents(g, v, r_row, r_col, r_driver=r_driver, r_sense=r_sense)
    assert np.abs(got - expected).max() <= 1e-6 * np.abs(expected).max()


def test_differential_pair_agrees_with_ngspice(tmp_path):
    """Rows 2k and 2k+1 hold G+ and G- and are driven by +u_k and -u_k."""
    rng = np.random.default_rng(5)
    g = rng.uniform(1e-6, 300e-6, (24, 16))
    u = rng.uniform(-0.2, 0.2, 12)
    v = np.empty(24)
    v[0::2], v[1::2] = u, -u
    expected = spice_currents(tmp_path, g, v, 2.0, 3.0, 1.0, 1.0)
    got = output_currents(g, v, 2.0, 3.0, r_driver=1.0, r_sense=1.0)
    assert np.abs(got - expected).max() <= 1e-6 * np.abs(expected).max()
