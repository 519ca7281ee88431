"""The notebooks run top to bottom at small size and are saved with outputs.

Each notebook is executed on a temporary copy with ``LSTM_HW_NOTEBOOK_SMALL=1``
(its first cell picks small sizes from it), so a change of the library that
breaks a notebook fails here. The saved notebooks must hold the outputs of one
complete run, so that readers see the figures without running anything.
"""

import shutil
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = [
    "01_device_nonidealities.ipynb",
    "02_ir_drop.ipynb",
    "03_lstm_on_crossbars.ipynb",
]
# Saved notebooks carry their figures; past this size they bloat the repository.
MAX_BYTES = 2_000_000


def _code_cells(nb):
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def _images(cells) -> int:
    return sum(
        "image/png" in out.get("data", {}) for cell in cells for out in cell.outputs
    )


@pytest.mark.parametrize("name", NAMES)
def test_saved_notebook_holds_one_complete_run(name):
    path = NOTEBOOKS / name
    assert path.stat().st_size < MAX_BYTES
    nb = nbformat.read(path, as_version=4)
    cells = _code_cells(nb)
    assert cells, "a notebook without code"
    # Execution counts 1, 2, ... in order: every cell ran, top to bottom, in one
    # kernel, and none was re-run or skipped afterwards.
    assert [c.execution_count for c in cells] == list(range(1, len(cells) + 1))
    for cell in cells:
        assert not any(out.output_type == "error" for out in cell.outputs)
    size_switch = 'SMALL = os.environ.get("LSTM_HW_NOTEBOOK_SMALL") == "1"'
    assert size_switch in cells[0].source
    assert _images(cells) >= 3


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_at_small_size(name, tmp_path, monkeypatch):
    copy = tmp_path / name
    shutil.copy(NOTEBOOKS / name, copy)
    nb = nbformat.read(copy, as_version=4)
    # Proves that the kernel saw the size parameter.
    nb.cells.append(nbformat.v4.new_code_cell("assert SMALL"))
    monkeypatch.setenv("LSTM_HW_NOTEBOOK_SMALL", "1")
    client = nbclient.NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    cells = _code_cells(nb)
    assert all(c.execution_count is not None for c in cells)
    assert _images(cells) >= 3
