"""`volumes`: a stack's named volumes, as docker compose lists them (DRIVER, VOLUME NAME), of
the services named if any: the volumes their containers mount. Read in this process, as
`volume ls` reads them."""

from __future__ import annotations

import argparse
import sys

from reconciler.cli import compose_base, listing, volumes as volume_verbs


def volumes(args: argparse.Namespace) -> int:
    from controllers import volumes as controller

    name, project = compose_base.project_name(args)
    compose_base.check_services(project, args.services)
    ctx = compose_base.context(args)
    found = [v for v in controller.volumes.list_all(ctx.root)
             if v.label(controller.PROJECT) == name and not controller.is_anonymous(v)]
    if args.services:
        mine = {v.id for v in compose_base.run(
            compose_base.containers(ctx, name, args.services, oneoff=None))}
        used = controller.users(ctx)
        found = [v for v in found if mine & set(used.get(v.name, ()))]
    found.sort(key=lambda v: listing.natural_key(v.name))
    if args.quiet:
        sys.stdout.write("".join(f"{v.name}\n" for v in found))
        return 0
    # The rows of `volume ls`: docker's volume formatter serves both.
    listing.write_list(args.format, [volume_verbs._row(v) for v in found],
                       [("Driver", "DRIVER"), ("Name", "VOLUME NAME")])
    return 0
