"""A Compose service as the runtime's values, and docker's health rules (pure)."""

from __future__ import annotations

from controllers import health, service_config
from reconciler import spec
from runtime.oci import model as oci_model

STACK = """
name: shop
services:
  web:
    image: busybox
    entrypoint: ["/bin/sh", "-c"]
    command: ["httpd -f"]
    environment: {MODE: prod}
    user: "33"
    init: true
    read_only: true
    cap_drop: [NET_RAW]
    security_opt: ["no-new-privileges:true"]
    stop_grace_period: 3s
    deploy:
      resources:
        limits: {cpus: "0.5", memory: 64M, pids: 50}
    mem_reservation: 32m
    ports: ["127.0.0.1:8080-8081:80-81/udp"]
    networks:
      front: {aliases: [www], ipv4_address: 10.5.0.9}
    volumes:
      - data:/var/lib/data:ro
      - /cache
    healthcheck:
      test: ["CMD-SHELL", "wget -q -O - localhost"]
      interval: 5s
      retries: 2
      start_period: 10s
networks:
  front:
    ipam: {config: [{subnet: 10.5.0.0/24}]}
volumes:
  data: {}
"""


def load(tmp_path):
    (tmp_path / "compose.yaml").write_text(STACK)
    return spec.load([tmp_path / "compose.yaml"], environ={})


def test_container_config_carries_what_the_stack_says(tmp_path):
    project = load(tmp_path)
    svc = project.stack.services["web"]
    config = service_config.container_config(
        project="shop", service="web", svc=svc, replica=2, cname="shop-web-2",
        config_hash="abc", image_ref="sha256:1", image=oci_model.ImageConfig(cmd=("sh",)),
        rootfs="/r", volume_dirs={"/var/lib/data": "/v/data", "/cache": "/v/anon"}, files={},
        network="/run/netns/x", namespaces={}, addresses=("10.5.0.9",), nameservers=("10.5.0.1",))
    assert config.entrypoint == ("/bin/sh", "-c") and config.command == ("httpd -f",)
    assert config.environment == {"MODE": "prod"} and config.user == "33"
    assert config.init and config.read_only and config.no_new_privileges
    assert config.cap_drop == ("NET_RAW",) and config.stop_grace_period == 3.0
    r = config.resources
    assert (r.cpus, r.memory_limit, r.pids_limit, r.memory_reservation) == \
        (0.5, 64 * 2**20, 50, 32 * 2**20)
    mounts = {m.target: (m.source, m.read_only) for m in config.mounts}
    assert mounts == {"/var/lib/data": ("/v/data", True), "/cache": ("/v/anon", False)}
    assert config.labels["com.docker.compose.container-number"] == "2"
    assert config.identity == oci_model.Identity("shop", "web", 2, "abc", "sha256:1", False)


def test_network_wishes_name_the_project_network_with_aliases_and_ports(tmp_path):
    project = load(tmp_path)
    wish = service_config.container_net(project="shop", stack=project.stack, service="web",
                                        svc=project.stack.services["web"], cname="shop-web-1",
                                        netns="/run/netns/x")
    (endpoint,) = wish.endpoints
    assert (endpoint.network, endpoint.ipv4, endpoint.aliases) == \
        ("shop_front", "10.5.0.9", ("web", "www"))
    assert [(p.host_ip, p.published, p.target, p.protocol) for p in wish.ports] == \
        [("127.0.0.1", 8080, 80, "udp"), ("127.0.0.1", 8081, 81, "udp")]


def test_anonymous_volumes_keep_their_name_across_a_recreate(tmp_path):
    project = load(tmp_path)
    svc = project.stack.services["web"]
    uses = service_config.volume_uses("shop", project.stack, svc, "shop-web-1")
    assert [u.name for u in uses][0] == "shop_data"
    assert uses[1].name == service_config.volume_uses("shop", project.stack, svc, "shop-web-1")[1].name
    assert uses[1].name.startswith("shop-web-1_anon_")


def test_healthcheck_as_argv_with_docker_defaults(tmp_path):
    project = load(tmp_path)
    check = service_config.healthcheck(project.stack.services["web"], ())
    assert check["argv"] == ["/bin/sh", "-c", "wget -q -O - localhost"]
    assert (check["interval"], check["timeout"], check["retries"], check["start_period"]) == \
        (5.0, 30.0, 2, 10.0)


def test_failures_in_the_start_period_do_not_count_then_retries_make_it_unhealthy():
    state = {"check": {"retries": 2, "start_period": 10.0, "interval": 1.0,
                       "start_interval": 0.5}, "status": "starting", "failing_streak": 0}
    started = 1000.0
    state = health.next_status(state, False, started + 1, started)
    assert (state["status"], state["failing_streak"]) == ("starting", 0)
    state = health.next_status(state, False, started + 11, started)
    assert (state["status"], state["failing_streak"]) == ("starting", 1)
    state = health.next_status(state, False, started + 12, started)
    assert state["status"] == "unhealthy"
    state = health.next_status(state, True, started + 13, started)
    assert (state["status"], state["failing_streak"]) == ("healthy", 0)
