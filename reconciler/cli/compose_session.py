"""`wait` and `attach`: verbs that stay with a stack's running containers until they end.

Both only read and relay, in this process, as `logs` does: `wait` watches conmon's exit
records, `attach` is one more client of the container's conmon attach socket (as `run` is of
its one-off's), so the container runs on under conmon whatever happens to us.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys

from reconciler.cli import common, compose_base

EXIT_POLL = 0.05  # s; shorter than the first restart delay, so an exit before a restart is seen
DEFAULT_DETACH_KEYS = "ctrl-p,ctrl-q"


# -- wait
def wait(args: argparse.Namespace) -> int:
    name, project = compose_base.project_name(args)
    compose_base.check_services(project, args.services)
    code = compose_base.run(_wait(args, name))
    if args.down_project:
        from reconciler.cli import compose_up

        compose_up.down(argparse.Namespace(**{**vars(args), "volumes": False,
                                               "timeout": None, "remove_orphans": True}))
    return code


async def _wait(args: argparse.Namespace, name: str) -> int:
    """docker compose's: every running container of the services (one-off ones too) until
    it exits, a line for each; the code of the last one to exit."""
    ctx = compose_base.context(args)
    views = [v for v in await compose_base.containers(ctx, name, args.services, oneoff=None)
             if v.state in ("running", "paused")]
    if not views:
        raise common.UserFacingError(f'no containers for project "{name}"')
    codes: list[int] = []

    async def one(view) -> None:
        code = await exit_code(ctx, view.id)
        print(f'container "{view.name}" exited with status code {code}', flush=True)
        codes.append(code)

    await asyncio.gather(*(one(v) for v in views))
    return codes[-1]


async def exit_code(ctx, cid: str) -> int:
    """The code conmon records when the container's process ends (128+n for a signal n)."""
    from runtime.oci import lifecycle

    while True:
        status = lifecycle.exit_status(ctx.layout, cid)
        if status is not None:
            return status.code
        if not lifecycle.known(ctx.layout, cid):
            status = lifecycle.exit_status(ctx.layout, cid)
            if status is not None:
                return status.code
            raise common.UserFacingError(f"container {cid} was removed before it exited")
        await asyncio.sleep(EXIT_POLL)


# -- attach
def attach(args: argparse.Namespace) -> int:
    name, project = compose_base.project_name(args)
    compose_base.check_services(project, [args.service], containers=True)
    keys = detach_keys(args.detach_keys or DEFAULT_DETACH_KEYS)
    return compose_base.run(_attach(args, name, keys, project))


async def _attach(args: argparse.Namespace, name: str, keys: bytes, project=None) -> int:
    from runtime.oci import attach as oci_attach, lifecycle

    ctx = compose_base.context(args)
    view = await _target(ctx, name, args.service, args.index, project)
    if view.state == "paused":
        raise common.UserFacingError("You cannot attach to a paused container, unpause it first")
    terminal = _has_terminal(ctx, view.id)
    stdin = not args.no_stdin
    if terminal and stdin and not os.isatty(0):
        raise common.UserFacingError("the input device is not a TTY")
    try:
        session = await oci_attach.connect(ctx.layout.bundle(view.id))
    except oci_attach.AttachError as error:
        raise common.UserFacingError(str(error)) from None
    stream = Detachable(session, keys)

    async def ended() -> int | None:
        """The container's exit code, or None when the user detached first."""
        exited = asyncio.ensure_future(exit_code(ctx, view.id))
        try:
            await asyncio.wait([exited, stream.detached], return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not exited.done():
                exited.cancel()
        return None if stream.detached.done() else exited.result()

    async def signal(sig: str) -> None:
        with contextlib.suppress(RuntimeError):  # it has ended meanwhile: nothing to signal
            await lifecycle.kill(ctx.layout, view.id, sig)

    sys.stdout.flush()
    try:
        with oci_attach.local_terminal(0 if terminal and stdin else None, stream):
            relay = oci_attach.relay(stream, ended(), stdin=0 if stdin else None)
            if args.sig_proxy and not terminal:  # docker proxies signals only without a tty
                with oci_attach.signals_forwarded(signal):
                    code = await relay
            else:
                code = await relay
    except BrokenPipeError:  # whoever read our output has gone (`attach ... | head`)
        return 141
    finally:
        session.close()
    return 0 if code is None else code


async def _target(ctx, name: str, service: str, index: int, project=None):
    """docker compose's pick: the running (or paused) container of `service` numbered
    `index`, else its lowest-numbered one; one-off containers last. `service` may name a
    container instead (its name, ID or ID prefix): that one."""
    views = await compose_base.containers(ctx, name, [service], oneoff=None, refs=True,
                                          declared=project)
    if views and all(v.service != service for v in views):
        index = 0
    views = [v for v in views
             if v.state in ("running", "paused") and (index <= 0 or v.replica == index)]
    if not views:
        suffix = f" container #{index}" if index > 0 else ""
        raise common.UserFacingError(f'service "{service}" is not running{suffix}')
    return min(views, key=lambda v: (v.oneoff, v.replica, v.name))


def _has_terminal(ctx, cid: str) -> bool:
    try:
        config = json.loads((ctx.layout.bundle(cid) / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return bool(config.get("process", {}).get("terminal"))


def detach_keys(text: str) -> bytes:
    """docker's --detach-keys: comma-separated `ctrl-<c>` or single characters."""
    out = bytearray()
    for part in text.split(","):
        word = part.strip().lower()
        if word.startswith("ctrl-") and len(word) == 6:
            code = ord(word[5])
            if "a" <= word[5] <= "z":
                out.append(code - ord("a") + 1)
            elif word[5] in "@[\\]^_":
                out.append(code - ord("@"))
            else:
                raise common.UserFacingError(f"invalid detach keys: unknown character {part!r}")
        elif len(part.strip()) == 1:
            out.append(ord(part.strip()))
        else:
            raise common.UserFacingError(f"invalid detach keys: unknown character {part!r}")
    return bytes(out)


class Detachable:
    """The container's side of an attachment, with the user's detach keys taken out of the
    input: typing them ends the attachment, not the container. A prefix of them is held back
    until the next byte shows whether it was input after all. Our input ending is not the
    container's: a service's input stays open for whoever attaches next."""

    def __init__(self, inner, keys: bytes) -> None:
        self.inner = inner
        self.keys = keys
        self.held = bytearray()
        self.detached: asyncio.Future = asyncio.get_running_loop().create_future()

    async def receive(self):
        return await self.inner.receive()

    async def send(self, data: bytes) -> None:
        out = bytearray()
        for byte in data:
            if self.detached.done():
                break  # what came after the keys is not the container's
            self.held.append(byte)
            if self.keys[:len(self.held)] != self.held:
                # Not the keys after all; this byte may begin them again.
                restart = byte == self.keys[0]
                out += self.held[:-1] if restart else self.held
                del self.held[:-1 if restart else None]
            if len(self.held) == len(self.keys):
                self.held.clear()
                self.detached.set_result(None)
        if out:
            await self.inner.send(bytes(out))

    def end_input(self) -> None:
        pass

    def resize(self, rows: int, cols: int) -> None:
        self.inner.resize(rows, cols)
