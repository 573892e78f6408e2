"""`pcompose system df|prune`: docker's view of what the machine's state takes on disk, and its
removal of what nothing uses: stopped containers, unused networks, images, anonymous volumes.

They act in this process, as the network, volume and image verbs do. A stopped container is
removed as `run --rm` removes one (no route of the agent removes a single container); a stopped
container of a project is made again by that project's next `up`.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
from pathlib import Path

from reconciler.cli import common, compose_base, images as image_verbs, listing, render
from runtime.build import cache as build_cache
from runtime.images import gc

PRUNE_FILTERS = ("label", "label!", "until")


def register(verbs: argparse._SubParsersAction) -> None:
    """Add this module's verbs to the parser."""
    system = verbs.add_parser("system", help="Manage the machine's state").add_subparsers(
        dest="system_verb", metavar="COMMAND")

    p = system.add_parser("df", help="Show disk usage")
    p.add_argument("-v", "--verbose", action="store_true", help="Show detailed information on space usage")
    p.add_argument("--format", default="table", help="table, json or a Go template")
    p.set_defaults(handler=df)

    p = system.add_parser("prune", help="Remove unused data")
    p.add_argument("-a", "--all", action="store_true", help="Remove all unused images not just dangling ones")
    p.add_argument("--volumes", action="store_true", help="Prune anonymous volumes")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    p.add_argument("--filter", action="append", default=[], metavar="FILTER",
                   help='Provide filter values (e.g. "label=<key>=<value>", "until=<timestamp>")')
    p.set_defaults(handler=prune)


def _controller():
    from controllers import system
    return system


# -- df
def df(args: argparse.Namespace) -> int:
    usage = asyncio.run(_controller().disk_usage(compose_base.context(args)))
    if args.verbose:
        _verbose(args.format, usage)
        return 0
    steps, cached = build_cache.usage(compose_base.context(args).images)
    size = listing.human_size(cached)
    rows = [_images_row(usage), _containers_row(usage), _volumes_row(usage),
            {"Type": "Build Cache", "TotalCount": str(steps), "Active": "0", "Size": size,
             "Reclaimable": size}]
    listing.write_list(args.format, rows, [("Type", "TYPE"), ("TotalCount", "TOTAL"), ("Active", "ACTIVE"),
                                           ("Size", "SIZE"), ("Reclaimable", "RECLAIMABLE")])
    return 0


def _reclaimable(reclaimable: int, total: int) -> str:
    """docker's: `11.63MB (70%)`, the share in whole percent, none when nothing is there."""
    text = listing.human_size(reclaimable)
    return f"{text} ({reclaimable * 100 // total}%)" if total > 0 else text


def _row(kind: str, total: int, active: int, size: int, reclaimable: int) -> dict:
    return {"Type": kind, "TotalCount": str(total), "Active": str(active),
            "Size": listing.human_size(size), "Reclaimable": _reclaimable(reclaimable, size)}


def _images_row(usage) -> dict:
    found = usage.images
    active = sum(1 for i in found.images if usage.image_containers.get(i.image.id))
    return _row("Images", len(found.images), active, found.size, found.reclaimable)


def _containers_row(usage) -> dict:
    found = usage.containers
    return _row("Containers", len(found), sum(1 for c in found if c.active),
                sum(c.size for c in found), sum(c.size for c in found if not c.active))


def _volumes_row(usage) -> dict:
    found = usage.volumes
    return _row("Local Volumes", len(found), sum(1 for v in found if v.users),
                sum(v.size for v in found), sum(v.size for v in found if not v.users))


def _verbose(fmt: str, usage) -> None:
    """`system df -v`: a table per kind, or with --format json one object of them all."""
    now = dt.datetime.now(dt.UTC)
    image_rows = [_image_row(i, usage.image_containers.get(i.image.id, 0)) for i in usage.images.images]
    container_rows = [_container_row(c, sum(1 for v in usage.volumes if c.view.id in v.users), now)
                      for c in usage.containers]
    volume_rows = [_volume_row(v) for v in usage.volumes]
    if fmt == "json":
        sys.stdout.write(json.dumps({"Images": image_rows, "Containers": container_rows,
                                     "Volumes": volume_rows, "BuildCache": []},
                                    ensure_ascii=False, separators=(",", ":")) + "\n")
        return
    if fmt != "table":
        raise common.UserFacingError("system df -v: --format takes table or json")
    out = ["Images space usage:\n\n", listing.table(
        ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE", "SHARED SIZE", "UNIQUE SIZE", "CONTAINERS"],
        [[r["Repository"], r["Tag"], r["ID"][7:19], r["CreatedSince"], r["Size"], r["SharedSize"],
          r["UniqueSize"], r["Containers"]] for r in image_rows])]
    out += ["\nContainers space usage:\n\n", listing.table(
        ["CONTAINER ID", "IMAGE", "COMMAND", "LOCAL VOLUMES", "SIZE", "CREATED", "STATUS", "NAMES"],
        [[r["ID"], r["Image"], r["Command"], r["LocalVolumes"], r["Size"], r["RunningFor"], r["Status"],
          r["Names"]] for r in container_rows])]
    out += ["\nLocal Volumes space usage:\n\n", listing.table(
        ["VOLUME NAME", "LINKS", "SIZE"], [[r["Name"], r["Links"], r["Size"]] for r in volume_rows])]
    out += ["\nBuild cache usage: 0B\n\n", listing.table(
        ["CACHE ID", "CACHE TYPE", "SIZE", "CREATED", "LAST USED", "USAGE", "SHARED"], [])]
    sys.stdout.write("".join(out))


def _image_row(found, containers: int) -> dict:
    record = found.image
    named = [k for k in record.references if not gc.is_dangling_key(k)]
    tagged = [k for k in named if "@" not in k]
    repo, tag = image_verbs.repo_tag(tagged[0]) if tagged else ("<none>", "<none>")
    return {"Containers": str(containers), "CreatedAt": record.config.created,
            "CreatedSince": image_verbs.since(record.config.created), "Digest": record.digest,
            "ID": record.id, "Repository": repo, "SharedSize": image_verbs.short_size(found.shared),
            "Size": image_verbs.short_size(found.size), "Tag": tag,
            "UniqueSize": image_verbs.short_size(found.size - found.shared),
            "VirtualSize": image_verbs.short_size(found.size)}


def _container_row(found, local_volumes: int, now: dt.datetime) -> dict:
    view = found.view
    return {"Command": render.command(view),
            "CreatedAt": render.created_at(view.created) if view.created else "",
            "ID": view.id, "Image": view.image, "Labels": listing.labels_text(dict(view.labels)),
            "LocalVolumes": str(local_volumes), "Names": view.name,
            "Networks": ",".join(view.networks), "RunningFor": render.ago(view.created, now),
            "Size": image_verbs.short_size(found.size), "State": view.state,
            "Status": render.status(view, now)}


def _volume_row(found) -> dict:
    vol = found.volume
    return {"Driver": vol.driver, "Labels": listing.labels_text(dict(vol.labels)),
            "Links": str(len(found.users)), "Mountpoint": str(vol.mountpoint), "Name": vol.name,
            "Scope": "local", "Size": image_verbs.short_size(found.size)}


# -- prune
def _warning(args: argparse.Namespace, filters: dict[str, list[str]]) -> str:
    """docker's confirmation, item by item."""
    items = ["all stopped containers", "all networks not used by at least one container"]
    if args.volumes:
        items.append("all anonymous volumes not used by at least one container")
    items.append("all images without at least one container associated to them" if args.all
                 else "all dangling images")
    items.append("all build cache" if args.all else "unused build cache")
    text = "WARNING! This will remove:\n" + "".join(f"  - {item}\n" for item in items)
    if filters:
        text += "\n  Items to be pruned will be filtered with:\n" + "".join(
            f"  - {key}={value}\n" for key, values in sorted(filters.items()) for value in values)
    return text.rstrip("\n")


def _prune_containers(args: argparse.Namespace, ctx, keep) -> list[tuple[str, int]]:
    """The stopped containers the filters leave, removed by the agent: it stops wanting
    those of a project first, as for `rm`, so that no pass of its loop makes them again."""
    from controllers import services
    from reconciler.agent import plainclient, wire
    from reconciler.cli import compose_up

    views = asyncio.run(services.list_containers(ctx))
    chosen = [v.id for v in views if v.state in ("exited", "created") and not keep(v)]
    if not chosen:
        return []
    compose_up.ensure_agent_now(args)
    try:
        with plainclient.PlainClient(Path(args.run_dir), timeout=None) as agent:
            answer = agent.call("POST", "/v1/prune", {"containers": chosen})
    except (wire.ApiError, wire.AgentUnavailable) as error:
        raise common.UserFacingError(str(error)) from None
    return [(cid, int(freed)) for cid, freed in answer["removed"]]


def prune(args: argparse.Namespace) -> int:
    filters = listing.parse_filters(args.filter, PRUNE_FILTERS)
    if args.volumes and "until" in filters:
        raise common.UserFacingError('the "until" filter is not supported with "--volumes"')
    if not args.force and not listing.confirm(_warning(args, filters)):
        return 0
    from controllers import networks, volumes

    ctx = compose_base.context(args)
    until = listing.until_ns(filters["until"][-1]) if "until" in filters else None
    sections, freed = [], 0

    def labels_kept(labels: dict) -> bool:
        return (not listing.labels_match(labels, filters.get("label", []))
                or not listing.labels_exclude(labels, filters.get("label!", [])))

    def keep_container(view) -> bool:
        created = int(view.created.timestamp() * 1e9) if view.created else 0
        return labels_kept(dict(view.labels)) or (until is not None and created >= until)

    gone = _prune_containers(args, ctx, keep_container)
    if gone:
        sections.append("Deleted Containers:\n" + "".join(f"{cid}\n" for cid, _ in gone))
    freed += sum(size for _, size in gone)

    networks_gone = networks.prune(ctx, lambda view: labels_kept(dict(view.labels)) or (
        until is not None and view.created_ns >= until))
    if networks_gone:
        sections.append("Deleted Networks:\n" + "".join(f"{name}\n" for name in networks_gone))

    if args.volumes:
        volumes_gone = volumes.prune(ctx, keep=lambda vol: labels_kept(dict(vol.labels)))
        if volumes_gone:
            sections.append("Deleted Volumes:\n" + "".join(f"{name}\n" for name, _ in volumes_gone))
        freed += sum(size for _, size in volumes_gone)

    text, image_bytes = image_verbs.prune_images(args, all_images=args.all,
                                                 keep=image_verbs.prune_filter(filters))
    if text:
        sections.append(text)
    freed += image_bytes
    sys.stdout.write("".join(f"{section}\n" for section in sections))
    print(f"Total reclaimed space: {listing.human_size(freed)}")
    return 0
