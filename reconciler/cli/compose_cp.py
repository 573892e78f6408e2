"""`pcompose cp`: docker compose's copy between a service's container and the host, either way,
with `-` for a tar stream on stdin or stdout (runtime.cp does the copying)."""

from __future__ import annotations

import argparse
import os
import posixpath

from reconciler.cli import common, compose_base, render

DESCRIPTION = """\
Copy files/folders between a service container and the local filesystem. `-` as SRC_PATH
reads a tar stream from stdin and extracts it into DEST_PATH, a dir; as DEST_PATH, writes
SRC_PATH as a tar stream to stdout.

SERVICE may also be a container's name. Paths in a container are taken from its root and
resolved as the container resolves them: its symlinks never lead to the host's files. A
running container is copied to and from inside its mount namespace, its volumes and tmpfs
mounts included; a stopped container's own root is used instead, and its volumes and tmpfs
mounts are not reached. Symlinks in the copied tree are copied as symlinks; -L follows
SRC_PATH itself only. Files copied into a container are owned by root, files copied to the
host by you, unless -a keeps the source's uid/gid. On the host, set-user/group-ID bits are
dropped and device nodes are not made.
"""

# Mounts every container has, which are not the user's volumes (a stopped container's warning).
_SYSTEM_MOUNTS = ("/proc", "/dev", "/sys")


def register(verbs: argparse._SubParsersAction) -> None:
    """Add this module's verbs to the parser."""
    p = verbs.add_parser(
        "cp", help="Copy files/folders between a service container and the local filesystem",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="pcompose cp [OPTIONS] SERVICE:SRC_PATH DEST_PATH|-\n"
              "       pcompose cp [OPTIONS] SRC_PATH|- SERVICE:DEST_PATH")
    p.add_argument("-a", "--archive", action="store_true",
                   help="Archive mode (copy all uid/gid information)")
    p.add_argument("-L", "--follow-link", action="store_true",
                   help="Always follow symbol link in SRC_PATH")
    p.add_argument("--index", type=int, default=None,
                   help="Index of the container if the service has several replicas (default: 1)")
    p.add_argument("--all", action="store_true",
                   help="Copy to every container of the service (deprecated in docker compose)")
    p.add_argument("source", metavar="SRC")
    p.add_argument("destination", metavar="DEST")
    p.set_defaults(handler=cp)


def split(arg: str) -> tuple[str, str]:
    """docker's reading of a cp argument: `CONTAINER:PATH`, or a local path (absolute, starting
    with `.`, `-`, or without a colon)."""
    if arg.startswith("/"):
        return "", arg
    head, colon, tail = arg.partition(":")
    if not colon or head.startswith("."):
        return "", arg
    return head, tail


def container_path(path: str) -> str:
    """A container path from its root (docker takes `tmp/x` as `/tmp/x`); trailing `/` and
    `/.` kept, they mean something."""
    if not path:
        raise common.UserFacingError("the path in the container can not be empty")
    return "/" + path.lstrip("/")


def cp(args: argparse.Namespace) -> int:
    from runtime import cp as copying

    src_name, src = split(args.source)
    dest_name, dest = split(args.destination)
    if src_name and dest_name:
        raise common.UserFacingError("copying between services is not supported")
    if not src_name and not dest_name:
        raise common.UserFacingError("unknown copy direction")
    into = bool(dest_name)
    if into and args.source == "-" and args.all:
        raise common.UserFacingError("--all cannot copy a tar stream from stdin")
    ctx = compose_base.context(args)
    views = compose_base.run(_containers(args, ctx, dest_name or src_name, into=into))
    progress = render.Progress()
    for view in views:
        ctr = _target(ctx, view)
        try:
            if into:
                path = container_path(dest)
                skipped = _copy_in(args, ctx, view, ctr, src, path)
                text = f"copy {src} to {view.name}:{path}"
            else:
                path = container_path(src)
                skipped = _copy_out(args, ctx, view, ctr, path, dest)
                text = f"copy {view.name}:{path} to {dest}"
        except copying.CopyError as error:
            raise common.UserFacingError(str(error)) from None
        if skipped:
            common.print_warning(f"not copied (device files and unknown kinds): {', '.join(skipped)}")
        progress.line(f"{view.name} {text}  Copied")
    return 0


def _copy_out(args, ctx, view, ctr, path: str, dest: str) -> list[str]:
    from runtime import cp as copying

    follow = args.follow_link
    found = copying.info(ctr, path, follow=follow)
    if not found.exists:
        raise copying.CopyError(f"No such container:path: {ctr.name}:{path}")
    if not ctr.pid:
        _warn_stopped_mounts(ctx, view, path)
    if dest == "-":
        copying.archive(ctr, path, copying.source_name(path), 1, follow=follow)
        return []
    there = copying.host_info(dest, follow=True)
    if not there.exists and not there.parent:
        parent = posixpath.dirname(os.path.abspath(dest))
        raise copying.CopyError(f"lstat {parent}: no such file or directory")
    where = copying.place(path, found.dir, dest, there)
    owner = None if args.archive else (os.getuid(), os.getgid())
    return copying.copy_out(ctr, path, where, follow=follow, owner=owner)


def _copy_in(args, ctx, view, ctr, src: str, path: str) -> list[str]:
    from runtime import cp as copying

    owner = None if args.archive else (0, 0)
    if not ctr.pid:
        _refuse_read_only(ctx, view)
        _warn_stopped_mounts(ctx, view, path)
    if src == "-":
        found = copying.info(ctr, path, follow=True)
        if not found.exists:
            raise copying.CopyError(f"No such container:path: {ctr.name}:{path}")
        if not found.dir:
            raise copying.CopyError(f'destination "{ctr.name}:{path}" must be a directory')
        return copying.extract(ctr, path, 0, owner=owner)
    follow = args.follow_link
    mine = copying.host_info(src, follow=follow)
    if not mine.exists:
        raise copying.CopyError(f"lstat {os.path.abspath(src)}: no such file or directory")
    found = copying.info(ctr, path, follow=False)
    if found.link is not None:
        # docker follows a symlink at DEST_PATH once, resolved in the container.
        path = posixpath.normpath(posixpath.join(posixpath.dirname(path.rstrip("/")), found.link))
        found = copying.info(ctr, path, follow=True)
    if not found.exists and not found.parent:
        parent = posixpath.dirname(path.rstrip("/")) or "/"
        raise copying.CopyError(f"No such container:path: {ctr.name}:{parent}")
    where = copying.place(src, mine.dir, path, found)
    return copying.copy_in(ctr, src, where, follow=follow, owner=owner)


async def _containers(args, ctx, name: str, *, into: bool) -> list:
    """The containers a copy acts on: of the service `name` (by --index, or every one with
    --all when copying into them), else the container called `name`."""
    from controllers import services

    try:
        project_name, project = compose_base.project_name(args)
        failure = None
    except common.UserFacingError as error:
        project_name, project, failure = None, None, error
    views = []
    if project_name is not None and (project is None or name in project.stack.services):
        views = await compose_base.containers(ctx, project_name, [name], oneoff=None)
        if not views and project is not None:
            raise common.UserFacingError(f'no container found for service "{name}"')
    if not views:  # a container's name, ID or ID prefix, as docker takes a container
        from controllers import inspect as inspecting

        try:
            named = inspecting.resolve(await services.list_containers(ctx), name)
        except inspecting.Ambiguous as error:
            raise common.UserFacingError(f"Error response from daemon: {error}") from None
        if named is not None:
            return [named]
        if failure is not None:
            raise failure
        raise common.UserFacingError(f"no such service: {name}")
    replicas = sorted((v for v in views if not v.oneoff), key=lambda v: v.replica)
    if args.index is not None:
        chosen = [v for v in replicas if v.replica == args.index]
        if not chosen:
            raise common.UserFacingError(f'service "{name}" is not running container #{args.index}')
        return chosen
    if args.all and into:
        return replicas + [v for v in views if v.oneoff]
    return (replicas or views)[:1]


def _target(ctx, view):
    from runtime import cp as copying, rootfs

    live = view.state in ("running", "paused", "created") and view.pid > 0
    return copying.Container(name=view.name, rootfs=str(rootfs.rootfs_dir(ctx.root, view.id) / "merged"),
                             pid=view.pid if live else 0)


def _config(ctx, view) -> dict:
    from controllers import context

    return context.read_json(ctx.layout.bundle(view.id) / "config.json")


def _refuse_read_only(ctx, view) -> None:
    """A stopped container's root is written directly: its read_only must hold here too (a
    running one's root is mounted read-only in its namespace)."""
    if _config(ctx, view).get("root", {}).get("readonly"):
        raise common.UserFacingError(f"container rootfs is marked read-only: {view.name}")


def _warn_stopped_mounts(ctx, view, path: str) -> None:
    """A stopped container's volumes and tmpfs are not reached: say so when the path meets one."""
    from runtime.oci import spec

    config = _config(ctx, view)
    own = {f"/etc/{name}" for name in spec.ETC_FILES} | {spec.INIT_PATH}
    path = posixpath.normpath(path)
    met = sorted(m["destination"] for m in config.get("mounts", ())
                 if m.get("destination") not in own
                 and not any(_beneath(m["destination"], top) for top in _SYSTEM_MOUNTS)
                 and (_beneath(path, m["destination"]) or _beneath(m["destination"], path)))
    if met:
        common.print_warning(f"{view.name} is not running: its mounts at {', '.join(met)} are not "
                             "reached, its own root beneath them is")


def _beneath(path: str, top: str) -> bool:
    return top == "/" or path == top or path.startswith(top.rstrip("/") + "/")
