"""Real runc containers (busybox) on our networks: a client container resolves the service by
name through its bind-mounted resolv.conf and fetches from it with wget."""

from __future__ import annotations

import asyncio

import pytest

from runtime.net import bridge, model, resolvconf
from tests.linux.net.conftest import container, wait_listening
from tests.linux.net.runc_box import Runc


@pytest.fixture
def runc(host, unique):
    box = Runc(host.run_dir, f"/pcompose-test/{unique}")
    try:
        yield box
    finally:
        box.cleanup()


async def test_runc_client_fetches_from_runc_service_by_name(host, dns_server, runc):
    bridge.ensure_network(host, model.NetworkSpec("site_default"))
    web = bridge.attach(host, container(host, "site-web-1", "site_default", hostname="web1"))
    client = bridge.attach(host, container(host, "site-client-1", "site_default"))
    await dns_server.update(bridge.dns_views(host))

    files = lambda name: resolvconf.directory(host.run_dir, name)  # noqa: E731
    runc.start("site-web-1", runc.bundle(
        "site-web-1", ["/bin/httpd", "-f", "-p", "80", "-h", "/www"], web.container.netns,
        files("site-web-1"), "web1"))
    wait_listening(web.container.netns, 80)
    fetch = ["/bin/timeout", "5", "/bin/wget", "-q", "-O", "-", "http://web/"]
    bundle = runc.bundle("site-client-1", fetch, client.container.netns, files("site-client-1"), "client")

    # in a thread, so that the DNS server on this event loop keeps answering
    code, out = await asyncio.to_thread(runc.run, "site-client-1", bundle)

    assert (code, out) == (0, "hello from web1\n")
