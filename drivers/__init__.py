"""quantrac-edge: drivers."""
