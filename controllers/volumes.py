"""Controller for volumes: observe, diff, apply."""
