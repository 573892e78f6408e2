"""Controller for images: observe, diff, apply."""
