"""quantrac-edge: provisioning."""
