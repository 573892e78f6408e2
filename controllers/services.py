"""Controller for services: observe, diff, apply."""
