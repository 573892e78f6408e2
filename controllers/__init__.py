"""Controllers, one module per resource kind; they never import each other."""
