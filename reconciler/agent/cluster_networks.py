"""The cluster's overlay networks in the agent: `pcompose network create -d overlay`, `ls`,
`inspect` and `rm` of them go through this agent's etcd client.

    GET    /v1/cluster/networks         {"self": node id, "networks": [overlay.Detail, ...]}
    POST   /v1/cluster/networks         {name, subnet?, attachable?, labels?} -> the network
    DELETE /v1/cluster/networks/{ref}   -> the network removed; 409 while endpoints remain

An agent started without --cluster answers 409; an unreachable etcd is 503, within the
client's deadline.
"""

from __future__ import annotations

from aiohttp import web

from reconciler.agent import nodes, server
from reconciler.cluster import membership, overlay

routes = web.RouteTableDef()


def install(app: web.Application) -> None:
    """After nodes.install, whose cluster this uses."""
    app.add_routes(routes)


def _member(request: web.Request) -> membership.Membership:
    return nodes.member_of(request, needs="overlay networks need a cluster: ")


@routes.get("/v1/cluster/networks")
async def list_networks(request: web.Request) -> web.Response:
    member = _member(request)
    with nodes.refusals():
        found = await overlay.details(member.client)
    return web.json_response({"self": member.id, "networks": [d.to_json() for d in found]})


@routes.post("/v1/cluster/networks")
async def create_network(request: web.Request) -> web.Response:
    member = _member(request)
    body = await server.json_body(request)
    unknown = sorted(set(body) - {"name", "subnet", "attachable", "labels"})
    if unknown:
        raise server.bad_request(f"request body: unknown key(s) {', '.join(unknown)}")
    name, subnet, labels = body.get("name"), body.get("subnet"), body.get("labels", {})
    if not isinstance(name, str) or not (subnet is None or isinstance(subnet, str)):
        raise server.bad_request("name (and subnet) must be strings")
    if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
        raise server.bad_request("labels: expected a mapping of strings")
    with nodes.refusals():
        net = await overlay.create_network(member.client, name, subnet=subnet,
                                           attachable=bool(body.get("attachable", True)),
                                           labels=labels)
    return web.json_response(net.to_json())


@routes.delete("/v1/cluster/networks/{ref}")
async def remove_network(request: web.Request) -> web.Response:
    member = _member(request)
    with nodes.refusals():
        net = await overlay.remove_network(member.client, request.match_info["ref"])
    return web.json_response(net.to_json())
