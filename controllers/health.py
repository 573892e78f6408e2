"""Controller for health: observe, diff, apply."""
