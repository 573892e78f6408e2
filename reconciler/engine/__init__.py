"""Work queue with per-key dedup, backoff, the plan executor and the event sources."""
