"""How `inspect` finds a container and reads its bundle: docker's lookup, limits, user mounts."""

from __future__ import annotations

import pytest

from controllers import inspect, services
from reconciler.agent import machine
from runtime import volumes


def view(name: str, cid: str | None = None) -> services.ContainerView:
    return services.ContainerView(
        name=name, id=cid or name, project="shop", service="web", replica=1, image="busybox",
        command=(), state="running", exit_code=None, health="", created=None, started=None,
        finished=None, pid=1, ports=(), networks=(), oneoff=False)


def test_a_container_is_found_by_id_then_name_then_one_id_prefix():
    views = [view("shop-web-1", "4f1c" + "0" * 60), view("shop-web-2", "4f2d" + "0" * 60),
             view("4f1c", "9a" + "0" * 62)]
    assert inspect.resolve(views, "9a" + "0" * 62).name == "4f1c"
    assert inspect.resolve(views, "4f1c").name == "4f1c"  # a name before an id prefix
    assert inspect.resolve(views, "/shop-web-2").name == "shop-web-2"
    assert inspect.resolve(views, "4f2").name == "shop-web-2"
    assert inspect.resolve(views, "shop-web") is None  # names are never prefixes
    with pytest.raises(inspect.Ambiguous, match="multiple IDs found with provided prefix: 4f"):
        inspect.resolve(views, "4f")
    assert inspect.resolve(views, "") is None


def test_limits_come_from_the_agents_record_else_from_the_bundle():
    assert inspect.LIMITS == machine.LIMITS  # the file the agent writes
    recorded = inspect._limits({"memory": 64 << 20, "memory_swap": 128 << 20, "cpus": 1.5,
                                "pids": 100, "cpu_period": None}, {"memory": {"limit": 1}})
    assert (recorded.memory, recorded.memory_swap, recorded.nano_cpus, recorded.pids,
            recorded.cpu_period) == (64 << 20, 128 << 20, 1_500_000_000, 100, 0)
    bundle = inspect._limits({}, {"memory": {"limit": 32 << 20, "reservation": 16 << 20},
                                  "cpu": {"quota": 50_000, "period": 100_000, "shares": 512}})
    assert (bundle.memory, bundle.memory_reservation, bundle.nano_cpus, bundle.cpu_shares,
            bundle.cpu_period, bundle.pids) == (32 << 20, 16 << 20, 500_000_000, 512, 0, None)


def test_only_the_users_mounts_are_listed(tmp_path):
    etc = tmp_path / "containers" / "c" / "etc"
    data = volumes.Volume("shop_data", tmp_path / "volumes" / "shop_data" / "_data", "local",
                          (), (), 0.0)
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["size=65536k"]},
        {"destination": "/cache", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]},
        {"destination": "/data", "type": "bind", "source": str(data.mountpoint),
         "options": ["rbind", "rprivate", "rw"]},
        {"destination": "/conf", "type": "bind", "source": "/srv/conf",
         "options": ["rbind", "rprivate", "ro"]},
        {"destination": "/etc/hosts", "type": "bind", "source": str(etc / "hosts")},
        {"destination": "/sbin/docker-init", "type": "bind", "source": "/usr/bin/tini"},
    ]
    found = list(inspect._mounts(mounts, etc, {str(data.mountpoint): data}))
    assert [(m.type, m.destination, m.read_only, m.name) for m in found] == [
        ("tmpfs", "/cache", False, ""), ("volume", "/data", False, "shop_data"),
        ("bind", "/conf", True, "")]
    assert found[2].propagation == "rprivate" and found[1].source == str(data.mountpoint)
    assert inspect._option_size(["mode=1777", "size=65536k"]) == 64 << 20
