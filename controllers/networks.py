"""Controller for networks: observe, diff, apply."""
