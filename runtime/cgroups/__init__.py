"""cgroup v1 and v2 drivers: paths, limits, stats, freeze, live update."""
