"""LSTM and GRU layers on simulated memristor crossbars."""

from pathlib import Path

from crossbar.jit import PACKAGE_DIR as _CROSSBAR_DIR
from crossbar.jit import drop_stale_caches

# The kernels here inline crossbar's read kernel: a change there is a change here.
drop_stale_caches(Path(__file__).parent, depends_on=[_CROSSBAR_DIR])


from lstm_hw.dense import Dense  # noqa: E402
from lstm_hw.gru import GRU  # noqa: E402
from lstm_hw.lstm import LSTM  # noqa: E402
from lstm_hw.network import Network  # noqa: E402

__all__ = ["LSTM", "GRU", "Dense", "Network"]
