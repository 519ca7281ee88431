"""LSTM and GRU layers on simulated memristor crossbars."""

from lstm_hw.dense import Dense
from lstm_hw.gru import GRU
from lstm_hw.lstm import LSTM
from lstm_hw.network import Network

__all__ = ["LSTM", "GRU", "Dense", "Network"]
