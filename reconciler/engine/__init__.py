"""Work queue with per-key dedup, backoff, the plan executor, the event sources and the reconcile of a project."""
