"""Which docker container events a finished step or an exit file makes."""

from __future__ import annotations

from reconciler.agent import container_events
from reconciler.plan import model, plans


def _desired(name="shop-web-1"):
    service = model.DesiredService("shop", "web", "h1", "busybox")
    return model.DesiredContainer(service, 1, name)


def _observed(name="shop-web-1"):
    return model.ObservedContainer(name, "shop", "web", 1, "h0", "sha256:abc",
                                   model.ContainerState.RUNNING)


def test_steps_on_containers_say_what_docker_says():
    create = plans.Step(1, "service:web:1", plans.Action.CREATE, desired=_desired())
    events = container_events.for_step("shop", create)
    assert [e.status for e in events] == ["create", "start"]
    assert events[0].type == "container" and events[0].resource == "shop-web-1"
    assert events[0].attributes == {"image": "busybox", "name": "shop-web-1", "service": "web"}
    remove = plans.Step(2, "service:web:1", plans.Action.REMOVE, observed=_observed())
    (destroy,) = container_events.for_step("shop", remove)
    assert destroy.status == "destroy" and destroy.attributes["image"] == "sha256:abc"


def test_other_resources_make_no_container_event():
    network = model.DesiredNetwork("default", "shop_default")
    step = plans.Step(1, "network:default", plans.Action.CREATE, desired=network)
    assert container_events.for_step("shop", step) == []


def test_an_exit_file_is_a_die_with_its_code(tmp_path):
    (tmp_path / "shop-web-2").write_text("137")
    died = container_events.for_exit("shop", tmp_path / "shop-web-2")
    assert died.status == "die" and died.resource == "shop-web-2"
    assert died.attributes == {"exitCode": "137", "name": "shop-web-2", "service": "web"}
    assert container_events.for_exit("shop", tmp_path / "gone") is None
    (tmp_path / "db").write_text("0")
    assert container_events.for_exit("shop", tmp_path / "db").attributes["service"] == ""
