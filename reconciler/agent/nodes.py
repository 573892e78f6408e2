"""The node verbs in the agent: the cluster's nodes read and edited in etcd through this agent's
membership (its client, its endpoints and TLS files, its own node id).

    GET    /v1/nodes              {"self": id, "nodes": [membership.Node.to_json(), ...]}
    PATCH  /v1/nodes/{node}       {label_add: {k: v}, label_rm: [k], role?, availability?}
                                  -> the node
    DELETE /v1/nodes/{node}       -> the node removed; 409 unless it is down

An agent started without --cluster answers 409; an unreachable etcd is 503, within the
client's deadline.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass

from aiohttp import web

from reconciler.agent import server
from reconciler.cluster import etcd, membership, overlay


@dataclass(frozen=True)
class Cluster:
    """This agent's place in a cluster: None without --cluster."""

    member: membership.Membership | None


CLUSTER = web.AppKey("cluster", Cluster)
routes = web.RouteTableDef()

NOT_IN_CLUSTER = ("this agent is not in a cluster: start it with `pcompose agent --cluster "
                  "URL[,URL...] --node-name NAME --advertise-addr IP`")


def install(app: web.Application, member: membership.Membership | None) -> None:
    app[CLUSTER] = Cluster(member)
    app.add_routes(routes)


def error(status: type[web.HTTPException], message: str) -> web.HTTPException:
    return status(text=json.dumps({"error": message}), content_type="application/json")


def member_of(request: web.Request, needs: str = "") -> membership.Membership:
    """This agent's membership; 409 without --cluster, `needs` saying what wanted one."""
    member = request.app[CLUSTER].member
    if member is None:
        raise error(web.HTTPConflict, needs + NOT_IN_CLUSTER)
    return member


@contextlib.contextmanager
def refusals() -> Iterator[None]:
    """etcd's and the cluster verbs' failures as the API's errors: the store unreachable is
    503, a node or network refused is 409 (404 for one not found), anything else of etcd 502."""
    try:
        yield
    except etcd.Unavailable as failure:
        raise error(web.HTTPServiceUnavailable,
                    f"the cluster store is unavailable: {failure}") from None
    except membership.NodeError as failure:
        raise error(web.HTTPConflict, str(failure)) from None
    except overlay.OverlayError as failure:
        status = web.HTTPNotFound if "not found" in str(failure) else web.HTTPConflict
        raise error(status, str(failure)) from None
    except etcd.EtcdError as failure:
        raise error(web.HTTPBadGateway, f"the cluster store refused: {failure}") from None


@routes.get("/v1/nodes")
async def list_nodes(request: web.Request) -> web.Response:
    member = member_of(request)
    with refusals():
        nodes = await membership.list_nodes(member.client)
    return web.json_response({"self": member.id, "nodes": [n.to_json() for n in nodes]})


@routes.patch("/v1/nodes/{node}")
async def update_node(request: web.Request) -> web.Response:
    member = member_of(request)
    update = _update(await server.json_body(request))
    with refusals():
        node = await membership.update_node(member.client, request.match_info["node"], update)
    return web.json_response(node.to_json())


@routes.delete("/v1/nodes/{node}")
async def remove_node(request: web.Request) -> web.Response:
    member = member_of(request)
    with refusals():
        node = await membership.remove_node(member.client, request.match_info["node"])
    return web.json_response(node.to_json())


def _update(body: dict) -> membership.Update:
    unknown = sorted(set(body) - {"label_add", "label_rm", "role", "availability"})
    if unknown:
        raise server.bad_request(f"request body: unknown key(s) {', '.join(unknown)}")
    add = body.get("label_add", {})
    remove = body.get("label_rm", [])
    if not isinstance(add, dict) or not all(
            isinstance(k, str) and k and isinstance(v, str) for k, v in add.items()):
        raise server.bad_request("label_add: expected a mapping of label to value")
    if not isinstance(remove, list) or not all(isinstance(k, str) for k in remove):
        raise server.bad_request("label_rm: expected a list of labels")
    role, availability = body.get("role"), body.get("availability")
    for name, value in (("role", role), ("availability", availability)):
        if value is not None and not isinstance(value, str):
            raise server.bad_request(f"{name}: expected a string")
    return membership.Update(tuple(sorted(add.items())), tuple(remove), role, availability)
