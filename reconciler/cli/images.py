"""Verbs of pcompose for images: pull, push, images, image ls|rm|load|import|prune|inspect|tag,
login, logout."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import getpass
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from reconciler.cli import common, compose_base, listing, progress, render
from runtime import images
from runtime.images import push as push_mod, reference, registry


def register(verbs: argparse._SubParsersAction) -> None:
    """Add this module's verbs to the parser."""
    p = verbs.add_parser("pull", help="Pull service images, or images by reference")
    p.add_argument("targets", nargs="*", metavar="SERVICE|IMAGE",
                   help="Services of the stack (default: all), or image references")
    p.add_argument("--platform", help="Platform os/arch[/variant] (default: this host's)")
    p.add_argument("-q", "--quiet", action="store_true", help="Pull without printing progress")
    p.add_argument("--insecure-registry", action="append", default=[], metavar="HOST[:PORT]",
                   help="Allow plain HTTP to this registry (repeatable; env PCOMPOSE_INSECURE_REGISTRIES)")
    p.set_defaults(handler=pull)

    p = verbs.add_parser(
        "push", help="Push service images (of services with a build section and an image name)")
    p.add_argument("services", nargs="*", metavar="SERVICE", help="Services of the stack (default: all)")
    p.add_argument("--ignore-push-failures", action="store_true",
                   help="Push what can be pushed, ignoring failures")
    p.add_argument("--include-deps", action="store_true",
                   help="Also push images of services declared as dependencies")
    p.add_argument("-q", "--quiet", action="store_true", help="Push without printing progress")
    p.add_argument("--insecure-registry", action="append", default=[], metavar="HOST[:PORT]",
                   help="Allow plain HTTP to this registry (repeatable; env PCOMPOSE_INSECURE_REGISTRIES)")
    p.set_defaults(handler=push)

    for parser in (verbs.add_parser("images", help="List images"),):
        _list_options(parser)
    image = verbs.add_parser("image", help="Manage images").add_subparsers(
        dest="image_verb", metavar="COMMAND")
    _list_options(image.add_parser("ls", help="List images"))

    for name in ("rm", "remove"):
        p = image.add_parser(name, help="Remove one or more images")
        p.add_argument("images", nargs="+", metavar="IMAGE")
        p.add_argument("-f", "--force", action="store_true",
                       help="Force removal of the image (every name of an id; in use by a stopped container)")
        p.add_argument("--no-prune", action="store_true",
                       help="Do not delete untagged parents (images here have none)")
        p.set_defaults(handler=image_rm)

    p = image.add_parser("load", help="Load images from a docker-archive or oci-archive tar")
    p.add_argument("-i", "--input", metavar="FILE", help="Read from tar archive file (default: stdin)")
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(handler=image_load)

    p = image.add_parser("import", help="Make a one-layer image from a root filesystem tar")
    p.add_argument("file", metavar="FILE", help="Root filesystem tar (plain or gzipped); - for stdin")
    p.add_argument("name", metavar="NAME[:TAG]")
    p.add_argument("-c", "--change", action="append", default=[], metavar="INSTRUCTION",
                   help="Apply a Dockerfile instruction to the image (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, "
                        "STOPSIGNAL, USER, VOLUME, WORKDIR); repeatable")
    p.add_argument("-m", "--message", default="", help="Set the commit message (history comment)")
    p.add_argument("--platform")
    p.set_defaults(handler=image_import)

    p = image.add_parser("prune", help="Remove unused images")
    p.add_argument("-a", "--all", action="store_true",
                   help="Remove all unused images, not just dangling ones")
    p.add_argument("-f", "--force", action="store_true", help="Do not prompt for confirmation")
    p.add_argument("--filter", action="append", default=[], metavar="FILTER",
                   help='Provide filter values (e.g. "until=<timestamp>", "label=<key>=<value>")')
    p.set_defaults(handler=image_prune)

    p = image.add_parser("inspect", help="Display detailed information on one or more images")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    p.add_argument("-f", "--format", help="json (default) or a Go template")
    p.set_defaults(handler=image_inspect)

    p = image.add_parser("tag", help="Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE")
    p.add_argument("source", metavar="SOURCE_IMAGE[:TAG]")
    p.add_argument("target", metavar="TARGET_IMAGE[:TAG]")
    p.set_defaults(handler=image_tag)

    p = verbs.add_parser("login", help="Log in to a registry")
    p.add_argument("server", nargs="?", default="docker.io")
    p.add_argument("-u", "--username")
    p.add_argument("-p", "--password")
    p.add_argument("--password-stdin", action="store_true", help="Take the password from stdin")
    p.set_defaults(handler=login)

    p = verbs.add_parser("logout", help="Log out from a registry")
    p.add_argument("server", nargs="?", default="docker.io")
    p.set_defaults(handler=logout)


def _list_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("table", "json"), default="table")
    parser.add_argument("-q", "--quiet", action="store_true", help="Only show image ids")
    parser.set_defaults(handler=list_images)


def _store(args: argparse.Namespace) -> images.Store:
    try:
        return images.Store(args.root)
    except OSError as err:
        raise common.UserFacingError(f"state root {args.root}: {err.strerror}") from None


def _platform(text: str | None) -> images.Platform | None:
    try:
        return images.manifest.parse_platform(text) if text else None
    except images.manifest.ManifestError as err:
        raise common.UserFacingError(str(err)) from None


# Errors a user can act on: one line each, no traceback.
_USER_ERRORS = (reference.ReferenceError, registry.RegistryError, images.StoreError,
                images.manifest.ManifestError, images.auth.AuthError, images.changes.ChangeError)


# -- pull
def pull(args: argparse.Namespace) -> int:
    jobs = _pull_jobs(args)
    store = _store(args)
    options = images.Options.from_env(tuple(args.insecure_registry))
    failed = 0
    shown = render.Progress(sys.stdout, "Pulling")
    quiet = args.quiet or shown.mode == "quiet"
    for ref, platform in jobs:
        display = None if quiet else _PullDisplay(ref.familiar(), shown)
        try:
            record = asyncio.run(images.pull(store, ref, platform=platform, options=options,
                                             progress=display.update if display else None))
        except _USER_ERRORS as err:
            if display:
                display.failed(str(err))
            shown.close()
            common.print_error(f"{ref.familiar()}: {err}")
            failed += 1
            continue
        if display:
            display.done()
            if shown.mode == "plain":
                print(f"Digest: {record.digest}")
                print(f"Status: {display.summary()} for {ref.familiar()}")
        if shown.mode != "json":  # stdout is the events' alone there
            shown.close()
            print(str(ref), flush=True)
    shown.close()
    return 1 if failed else 0


def _pull_jobs(args: argparse.Namespace) -> list[tuple[reference.Reference, images.Platform | None]]:
    """References to pull: the stack's service images, or the references given when no stack names them."""
    platform = _platform(args.platform)
    project = _try_stack(args)
    if project is not None and (not args.targets or all(t in project.stack.services for t in args.targets)):
        jobs = []
        for name in args.targets or project.services_enabled:
            svc = project.stack.services[name]
            if not svc.image or svc.pull_policy in ("never", "build"):
                continue
            jobs.append((_parse(svc.image), platform or _platform(svc.platform)))
        return list(dict.fromkeys(jobs))
    if not args.targets:
        raise common.UserFacingError("nothing to pull: no stack file here and no image given")
    return [(_parse(t), platform) for t in args.targets]


# The names the stack loader looks for (reconciler.spec.project.DEFAULT_FILES); checked here first so
# that `pull IMAGE` outside a project does not pay for importing the loader.
_STACK_FILES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")


def _stack_here(args: argparse.Namespace) -> bool:
    if args.files or os.environ.get("COMPOSE_FILE"):
        return True
    here = Path(args.project_directory or os.getcwd()).resolve()
    return any((folder / name).is_file() for folder in (here, *here.parents) for name in _STACK_FILES)


def _try_stack(args: argparse.Namespace):
    if not _stack_here(args):
        return None
    from reconciler import spec
    try:
        return spec.load(args.files or None, project_name=args.project_name, profiles=args.profiles,
                         env_files=args.env_files, project_directory=args.project_directory)
    except spec.SpecError as err:
        if args.files:
            raise common.UserFacingError(str(err)) from None
        return None  # no stack here: the targets are image references


def _parse(text: str) -> reference.Reference:
    try:
        return reference.parse(text)
    except reference.ReferenceError as err:
        raise common.UserFacingError(str(err)) from None


class _PullDisplay:
    """One image's pull as the progress of this run shows it: a row for the image and one
    under it per layer (Waiting, Downloading with its bytes, Verifying Checksum, Download
    complete, Extracting, Pull complete, Already exists); off a terminal `Pulling NAME` and a
    line per layer step, as docker pull writes them."""

    def __init__(self, name: str, shown: render.Progress) -> None:
        self.name, self.shown = name, shown
        self.statuses: dict[str, str] = {}
        if shown.mode == "plain":
            print(f"Pulling {name}", flush=True)
        else:
            shown.event(progress.Event(name, "Pulling"))

    def update(self, p: images.Progress) -> None:
        self.statuses[p.layer] = p.status
        self.shown.event(progress.Event(p.layer, p.status, progress.word_status(p.status),
                                        parent=self.name, current=p.current, total=p.total))

    def done(self) -> None:
        if self.shown.mode != "plain":
            self.shown.event(progress.Event(self.name, "Pulled", progress.DONE))

    def failed(self, message: str) -> None:
        if self.shown.mode != "plain":
            self.shown.event(progress.Event(self.name, "Error", progress.ERROR, message))

    def summary(self) -> str:
        if self.statuses and all(s == "Already exists" for s in self.statuses.values()):
            return "Image is up to date"
        return "Downloaded newer image"


# -- push
def push(args: argparse.Namespace) -> int:
    """docker compose push: each service that is built and named (`build:` and `image:`) goes to
    the registry of its image name, with its `build.tags`; the others are Skipped."""
    project = _try_stack(args)
    if project is None:
        raise common.UserFacingError("nothing to push: no stack file here")
    names = _push_services(project, args.services, args.include_deps)
    store = _store(args)
    options = images.Options.from_env(tuple(args.insecure_registry))
    shown = render.Progress(sys.stdout, "Pushing")
    quiet = args.quiet or shown.mode == "quiet"
    for name in names:
        svc = project.stack.services[name]
        if svc.build is None or not svc.image:
            if not quiet:
                shown.event(progress.Event(name, "Skipped", progress.DONE))
            continue
        for tag in dict.fromkeys([svc.image, *svc.build.tags]):
            ref = _parse(tag)
            row = f"{name} {ref.familiar()}" if tag != svc.image else name
            try:
                pushed = asyncio.run(push_mod.push(
                    store, ref, options=options, progress=None if quiet else _push_reporter(row, ref, shown)))
            except _USER_ERRORS as err:
                if not quiet:
                    shown.event(progress.Event(row, "Error", progress.ERROR, str(err)))
                shown.close()
                common.print_error(f"{ref.familiar()}: {err}")
                if not args.ignore_push_failures:
                    return 1
                continue
            if not quiet:
                shown.event(progress.Event(row, "Pushed", progress.DONE))
                if shown.mode == "plain":
                    print(f"{ref.tag or reference.DEFAULT_TAG}: digest: {pushed.digest} size: {pushed.size}",
                          flush=True)
    shown.close()
    return 0


def _push_services(project, wanted: list[str], include_deps: bool) -> list[str]:
    unknown = [n for n in wanted if n not in project.stack.services]
    if unknown:
        raise common.UserFacingError(f"no such service: {', '.join(unknown)}")
    names = list(wanted or project.services_enabled)
    if include_deps:
        todo = list(names)
        while todo:
            for dep in project.stack.services[todo.pop()].depends_on:
                if dep not in names:
                    names.append(dep)
                    todo.append(dep)
    return names


def _push_reporter(row: str, ref: reference.Reference, shown: render.Progress):
    if shown.mode == "plain":
        print(f"The push refers to repository [{ref.name}]", flush=True)
    else:
        shown.event(progress.Event(row, "Pushing"))

    def report(p: push_mod.Progress) -> None:
        if shown.mode == "plain":
            if p.status in ("Pushed", "Layer already exists"):
                print(f"{p.blob}: {p.status}", flush=True)
            return
        shown.event(progress.Event(p.blob, p.status, progress.word_status(p.status),
                                   parent=row, current=p.current, total=p.total))
    return report


# -- images / image ls
def list_images(args: argparse.Namespace) -> int:
    rows = []
    try:
        records = _store(args).list_images()
    except _USER_ERRORS as err:  # a document in the store that cannot be read: say which
        raise common.UserFacingError(str(err)) from None
    for record in records:
        for ref in record.references:
            repo, tag = repo_tag(ref)
            rows.append((repo, tag, record))
    rows.sort(key=lambda r: (r[0], r[1]))
    if args.quiet:
        for rid in dict.fromkeys(r[2].id[7:19] for r in rows):
            print(rid)
    elif args.format == "json":
        print(json.dumps([{
            "Repository": repo, "Tag": tag, "ID": rec.id, "Digest": rec.digest,
            "Created": rec.config.created, "Size": rec.size,
            "Platform": "/".join(p for p in (rec.config.os, rec.config.architecture) if p)}
            for repo, tag, rec in rows], indent=2))
    else:
        table = [("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE")] + [
            (repo, tag, rec.id[7:19], since(rec.config.created), short_size(rec.size))
            for repo, tag, rec in rows]
        widths = [max(len(row[i]) for row in table) for i in range(5)]
        for row in table:
            print("   ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def repo_tag(key: str) -> tuple[str, str]:
    if key.startswith(images.archive.DANGLING):
        return "<none>", "<none>"
    ref = reference.parse(key)
    return reference.familiar_name(ref.name), ref.tag or "<none>"


def since(created: str) -> str:
    try:
        then = datetime.datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return "N/A"
    seconds = (datetime.datetime.now(datetime.UTC) - then).total_seconds()
    for unit, size in (("year", 31536000), ("month", 2592000), ("week", 604800), ("day", 86400),
                       ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n > 1 else ''} ago"
    return "Less than a minute ago" if seconds >= 0 else "N/A"


def short_size(n: float) -> str:
    """docker's HumanSizeWithPrecision(n, 3), as `docker images` shows a size: `4.26MB`."""
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.3g}{unit}" if unit != "B" else f"{n}B"
        n /= 1000
    return f"{n}"


# -- image rm / load / import / prune / inspect / tag
def _image_use():
    from controllers import image_use
    return image_use


def image_rm(args: argparse.Namespace) -> int:
    """docker's rmi: each image in turn, its errors after its lines; exit 1 if any failed."""
    image_use = _image_use()
    ctx = compose_base.context(args)
    users = asyncio.run(image_use.users(ctx))
    failed = 0
    for name in args.images:
        try:
            removal, report = asyncio.run(image_use.remove(ctx, name, force=args.force, known_users=users))
        except _USER_ERRORS as err:
            common.print_error(str(err))
            failed += 1
            continue
        sys.stdout.write("".join(f"{word.capitalize()}: {what}\n"
                                 for word, what in _removed_lines([removal], report)))
    return 1 if failed else 0


def _removed_lines(removals, report) -> list[tuple[str, str]]:
    """("untagged" | "deleted", what) as docker reports a removal: the names, then the image id
    and the layers that went with it (top first); last, layers of no image that were swept."""
    # A layer several of them shared goes with the last of them, as its last reference does in docker.
    last = {chain_id: i for i, removal in enumerate(removals) if removal.deleted
            for chain_id in removal.image.chain_ids if chain_id in report.layers}
    lines = []
    for i, removal in enumerate(removals):
        lines += [("untagged", _familiar_key(key)) for key in removal.untagged]
        if removal.deleted:
            lines.append(("deleted", removal.image.id))
            lines += [("deleted", chain_id) for chain_id in reversed(removal.image.chain_ids)
                      if last.get(chain_id) == i]
    lines += [("deleted", chain_id) for chain_id in report.layers if chain_id not in last]
    return lines


def _familiar_key(key: str) -> str:
    return key if key.startswith(images.archive.DANGLING) else reference.parse(key).familiar()


def image_load(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        if args.input:
            records = images.load(store, args.input)
        else:
            if sys.stdin.isatty():
                raise common.UserFacingError(
                    "requested load from stdin, but stdin is a terminal; use -i FILE")
            with tempfile.NamedTemporaryFile(prefix="pcompose-load-") as spool:
                shutil.copyfileobj(sys.stdin.buffer, spool)
                spool.flush()
                records = images.load(store, spool.name)
    except _USER_ERRORS as err:
        raise common.UserFacingError(str(err)) from None
    for record in records:
        for ref in record.references:
            if ref.startswith(images.archive.DANGLING):
                print(f"Loaded image ID: {record.id}")
            else:
                print(f"Loaded image: {_familiar_key(ref)}")
    return 0


def image_import(args: argparse.Namespace) -> int:
    store = _store(args)
    options = {"platform": _platform(args.platform), "changes": tuple(args.change), "message": args.message}
    try:
        # a bad --change is refused before the tar is read, even from stdin
        images.changes.apply({}, [images.changes.parse(change) for change in args.change])
        if args.file == "-":
            with tempfile.NamedTemporaryFile(prefix="pcompose-import-") as spool:
                shutil.copyfileobj(sys.stdin.buffer, spool)
                spool.flush()
                record = images.import_rootfs(store, spool.name, args.name, source="-", **options)
        else:
            record = images.import_rootfs(store, args.file, args.name, **options)
    except _USER_ERRORS as err:
        raise common.UserFacingError(str(err)) from None
    print(record.id)
    return 0


PRUNE_FILTERS = ("label", "label!", "until")
WARNING_DANGLING = "WARNING! This will remove all dangling images."
WARNING_ALL = "WARNING! This will remove all images without at least one container associated to them."


def image_prune(args: argparse.Namespace) -> int:
    keep = prune_filter(listing.parse_filters(args.filter, PRUNE_FILTERS))
    if not args.force and not listing.confirm(WARNING_ALL if args.all else WARNING_DANGLING):
        return 0
    text, freed = prune_images(args, all_images=args.all, keep=keep)
    if text:
        print(text)
    print(f"Total reclaimed space: {listing.human_size(freed)}")
    return 0


def prune_filter(filters: dict[str, list[str]]):
    """The images a prune's --filter spares: label=, label!= and until= as docker reads them."""
    until = listing.until_ns(filters["until"][-1]) if "until" in filters else None

    def keep(record) -> bool:
        labels = dict(record.config.labels)
        if not listing.labels_match(labels, filters.get("label", [])):
            return True
        if not listing.labels_exclude(labels, filters.get("label!", [])):
            return True
        return until is not None and _created_ns(record.config.created) >= until
    return keep


def _created_ns(created: str) -> int:
    try:
        when = datetime.datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return 0
    return int(when.timestamp() * 1e9)


def prune_images(args: argparse.Namespace, *, all_images: bool, keep) -> tuple[str, int]:
    """docker's image prune: its "Deleted Images:" section ('' when nothing went) and the bytes
    given back, with the blobs and layers of no image (a load refused halfway) swept too."""
    removals, report = asyncio.run(_image_use().prune(compose_base.context(args),
                                                      all_images=all_images, keep=keep))
    lines = _removed_lines(removals, report)
    text = "".join(["Deleted Images:\n", *(f"{word}: {what}\n" for word, what in lines)]) if lines else ""
    return text, report.freed_bytes


def image_inspect(args: argparse.Namespace) -> int:
    store = _store(args)
    found, missing = [], []
    for name in args.images:
        try:
            record = store.resolve(name)
        except _USER_ERRORS as err:
            missing.append(str(err))
            continue
        if record is None:
            missing.append(f"no such image: {name}")
        else:
            found.append(_inspect(store, record))
    listing.write_inspect(args.format, found)
    for message in missing:
        common.print_error(message)
    return 1 if missing else 0


def _inspect(store: images.Store, record: images.ImageRecord) -> dict:
    """docker's image object, in its key order, for what an image here has."""
    cfg = record.config
    named = [k for k in record.references if not k.startswith(images.archive.DANGLING)]
    tags = [reference.parse(k).familiar() for k in named if "@" not in k]
    repositories = dict.fromkeys(reference.familiar_name(name) for k in named
                                 if (name := images.store.name_of(k)) is not None)
    config: dict[str, object] = {
        "User": cfg.user,
        "ExposedPorts": {port: {} for port in cfg.exposed_ports} or None,
        "Env": list(cfg.env) or None,
        "Cmd": list(cfg.cmd) or None,
        "Volumes": {path: {} for path in cfg.volumes} or None,
        "WorkingDir": cfg.working_dir,
        "Entrypoint": list(cfg.entrypoint) or None,
        "Labels": dict(cfg.labels) or None,
        "StopSignal": cfg.stop_signal,
    }
    if cfg.healthcheck_test:
        config["Healthcheck"] = {"Test": list(cfg.healthcheck_test)}
    lowers = [str(store.layer_dir(c) / "diff") for c in reversed(record.chain_ids)]
    return {
        "Id": record.id,
        "RepoTags": tags,
        "RepoDigests": [f"{name}@{record.digest}" for name in repositories],
        "Parent": "",
        "Comment": "",
        "Created": cfg.created,
        "DockerVersion": "",
        "Author": "",
        "Config": config,
        "Architecture": cfg.architecture,
        "Os": cfg.os,
        "Size": record.size,
        "GraphDriver": {"Data": {"LowerDir": ":".join(lowers)}, "Name": "overlay"},
        "RootFS": {"Type": "layers", "Layers": list(cfg.diff_ids)},
        "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
    }


def image_tag(args: argparse.Namespace) -> int:
    try:
        images.gc.tag(_store(args), args.source, args.target)
    except _USER_ERRORS as err:
        raise common.UserFacingError(str(err)) from None
    return 0


# -- login / logout
def login(args: argparse.Namespace) -> int:
    username = args.username or input("Username: ")
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif args.password is not None:
        common.print_warning("Using --password via the CLI is insecure. Use --password-stdin.")
        password = args.password
    else:
        password = getpass.getpass("Password: ")
    if not username or not password:
        raise common.UserFacingError("login needs a username and a password")
    try:
        path = asyncio.run(images.login(args.server, images.Credentials(username, password)))
    except _USER_ERRORS as err:
        raise common.UserFacingError(str(err)) from None
    print(f"Credentials stored in {path}")
    print("Login Succeeded")
    return 0


def logout(args: argparse.Namespace) -> int:
    try:
        found = images.auth.remove(args.server)
    except images.auth.AuthError as err:
        raise common.UserFacingError(str(err)) from None
    print(f"Removing login credentials for {args.server}" if found else f"Not logged in to {args.server}")
    return 0


