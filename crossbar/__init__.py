"""Device-level simulation of memristor crossbar arrays."""
