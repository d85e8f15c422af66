"""quantrac-edge: edge_agent."""
