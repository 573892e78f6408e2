"""Containers find each other by service name over a shared network, and only over one."""

from __future__ import annotations

from runtime.net import bridge, model
from tests.linux.net.conftest import container, fetch, httpd, until_fetched


async def test_client_fetches_from_service_by_name(host, procs, dns_server, tmp_path):
    bridge.ensure_network(host, model.NetworkSpec("app_back"))
    web = bridge.attach(host, container(host, "app-web-1", "app_back"))
    client = bridge.attach(host, container(host, "app-client-1", "app_back"))
    await dns_server.update(bridge.dns_views(host))
    httpd(procs, web.container.netns, tmp_path / "www", "hello from web\n")

    rc, body = await until_fetched(procs, client.container.netns, "http://web/", "app-client-1")

    assert (rc, body) == (0, "hello from web\n")


async def test_service_on_another_network_cannot_reach_it(host, procs, dns_server, tmp_path):
    bridge.ensure_network(host, model.NetworkSpec("app_back"))
    bridge.ensure_network(host, model.NetworkSpec("app_front"))
    web = bridge.attach(host, container(host, "app-web-1", "app_back"))
    friend = bridge.attach(host, container(host, "app-friend-1", "app_back"))
    stranger = bridge.attach(host, container(host, "app-stranger-1", "app_front"))
    await dns_server.update(bridge.dns_views(host))
    httpd(procs, web.container.netns, tmp_path / "www", "secret\n")
    web_ip = web.endpoints[0].ipv4
    assert await until_fetched(procs, friend.container.netns, f"http://{web_ip}/") == (0, "secret\n")

    by_ip = await fetch(procs, stranger.container.netns, f"http://{web_ip}/", timeout=2)
    by_name = await fetch(procs, stranger.container.netns, "http://web/", "app-stranger-1", timeout=2)

    assert by_ip[0] != 0 and by_ip[1] == ""
    assert by_name[0] != 0 and by_name[1] == ""
