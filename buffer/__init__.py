"""quantrac-edge: buffer."""
