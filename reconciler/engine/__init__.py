"""Work queue with per-key dedup and backoff, the plan executor, event sources, a project's reconcile."""
