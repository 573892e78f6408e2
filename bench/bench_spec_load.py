"""Benchmark: load a generated stack of 200 services that uses anchors, `<<:` merges and extends.

Run: .venv/bin/python bench/bench_spec_load.py [--services 200] [--runs 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reconciler import spec  # noqa: E402

HEADER = """\
name: bench
x-common: &common
  image: busybox:${TAG:-latest}
  restart: unless-stopped
  environment: &env
    LOG_LEVEL: info
    REGION: ${REGION:-eu}
  healthcheck:
    test: ["CMD", "true"]
    interval: 10s
  deploy:
    resources:
      limits: {cpus: "0.5", memory: 64M}
services:
  base:
    <<: *common
    volumes: ["./conf:/etc/app:ro"]
    labels: [tier=base]
"""

SERVICE = """\
  svc{i}:
{body}
    environment:
      <<: *env
      INDEX: "{i}"
    ports: ["{port}:80", "127.0.0.1:{port2}:81/udp"]
    volumes: ["data{v}:/data", "./svc{i}:/srv"]
    depends_on:
      svc{dep}: {{condition: service_started}}
    networks: [front, back]
"""


def generate(count: int) -> str:
    parts = [HEADER]
    for i in range(count):
        body = "    extends: base" if i % 2 else "    <<: *common"
        dep = max(i - 1, 0) if i else "base"
        parts.append(SERVICE.format(i=i, body=body, port=20000 + i, port2=30000 + i,
                                    v=i % 10, dep=dep if i else "x").replace("svcx", "base"))
    parts.append("networks:\n  front: {}\n  back: {internal: true}\nvolumes:\n")
    parts.extend(f"  data{v}: {{}}\n" for v in range(10))
    return "".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "compose.yaml"
        path.write_text(generate(args.services))
        project = spec.load([path], environ={})
        assert len(project.services_enabled) == args.services + 1
        times = []
        for _ in range(args.runs):
            start = time.perf_counter()
            project = spec.load([path], environ={})
            times.append(time.perf_counter() - start)
        start = time.perf_counter()
        hashes = [project.config_hash(n) for n in project.services_enabled]
        hash_time = time.perf_counter() - start
    print(f"services={args.services + 1} (every other one through extends, the rest through <<:)")
    print(f"load: median {statistics.median(times) * 1000:.1f} ms, "
          f"min {min(times) * 1000:.1f} ms, max {max(times) * 1000:.1f} ms over {args.runs} runs")
    print(f"config_hash of all {len(hashes)} services: {hash_time * 1000:.1f} ms")


if __name__ == "__main__":
    main()
