"""quantrac-edge: centre."""
