"""Controller for overlay: observe, diff, apply."""
