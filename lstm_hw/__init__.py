"""LSTM and GRU layers on simulated memristor crossbars."""
