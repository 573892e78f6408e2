"""The cluster's key layout in etcd: everything under /pcompose/v1/, named here only.

    config                                   the cluster's settings
    nodes/<id>/spec                          admin-owned: name, labels, role, availability
    nodes/<id>/status                        under the node's lease: hostname, address, ...
    vnis/<vni>                               a network's VXLAN id, claimed without a lease
    networks/<id>/subnets/<cidr>             a host's subnet of a network, kept without a lease
    networks/<id>/vteps/<node>               under the node's lease
    networks/<id>/endpoints/<container-id>   under the node's lease
"""

from __future__ import annotations

import re

PREFIX = "/pcompose/v1/"
CONFIG = PREFIX + "config"
NODES = PREFIX + "nodes/"
VNIS = PREFIX + "vnis/"
NETWORKS = PREFIX + "networks/"

NODE_ID = re.compile(r"^[a-z0-9]{1,64}$")


def node(node_id: str) -> str:
    """The prefix of every key of one node."""
    if not NODE_ID.match(node_id):
        raise ValueError(f"invalid node id {node_id!r}")
    return f"{NODES}{node_id}/"


def node_spec(node_id: str) -> str:
    return node(node_id) + "spec"


def node_status(node_id: str) -> str:
    return node(node_id) + "status"


def parse_node_key(key: str) -> tuple[str, str] | None:
    """(node id, "spec" | "status" | ...) of a key under nodes/, None for any other key."""
    if not key.startswith(NODES):
        return None
    node_id, _, part = key[len(NODES):].partition("/")
    if not NODE_ID.match(node_id) or not part:
        return None
    return node_id, part


def vni(number: int) -> str:
    return f"{VNIS}{number}"


def network(network_id: str) -> str:
    return f"{NETWORKS}{network_id}/"


def subnet(network_id: str, cidr: str) -> str:
    # A CIDR's slash would read as one more level of the layout.
    return f"{network(network_id)}subnets/{cidr.replace('/', '-')}"


def vtep(network_id: str, node_id: str) -> str:
    return f"{network(network_id)}vteps/{node_id}"


def endpoint(network_id: str, container_id: str) -> str:
    return f"{network(network_id)}endpoints/{container_id}"


NETWORK_NAMES = PREFIX + "network-names/"
NETWORK_ID = re.compile(r"^[a-z0-9]{1,64}$")


def network_name(name: str) -> str:
    """A cluster network's name, claimed once: it holds the network's id."""
    return f"{NETWORK_NAMES}{name}"


def network_spec(network_id: str) -> str:
    return network(network_id) + "spec"


def parse_network_key(key: str) -> tuple[str, str, str] | None:
    """(network id, "spec" | "subnets" | "vteps" | "endpoints", the rest) of a key under
    networks/, None for any other key."""
    if not key.startswith(NETWORKS):
        return None
    network_id, _, rest = key[len(NETWORKS):].partition("/")
    part, _, name = rest.partition("/")
    if not NETWORK_ID.match(network_id) or not part:
        return None
    return network_id, part, name
