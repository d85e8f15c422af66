"""quantrac-edge: hw_sim."""
