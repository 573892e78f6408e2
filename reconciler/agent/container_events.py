"""docker's container events (create, start, die, destroy, ...) from what the agent does and
sees, for `pcompose events` as docker compose events shows them."""

from __future__ import annotations

from pathlib import Path

from reconciler.agent import events
from reconciler.plan import model, plans
from runtime import names as naming

A = plans.Action
# What docker reports for each step once it is done, in the order it reports them.
ACTIONS = {A.CREATE: ("create", "start"), A.RECREATE: ("destroy", "create", "start"),
           A.START: ("start",), A.RESTART: ("stop", "start", "restart"),
           A.UNPAUSE: ("unpause",), A.UPDATE: ("update",), A.REMOVE: ("destroy",)}


def for_step(project: str, step: plans.Step) -> list[events.Event]:
    """The events of a finished step on a container; none for other resources."""
    target = step.desired if isinstance(step.desired, model.DesiredContainer) else step.observed
    if not isinstance(target, (model.DesiredContainer, model.ObservedContainer)):
        return []
    if isinstance(target, model.DesiredContainer):
        service, image = target.service.name, target.service.image
    else:
        service, image = target.service, target.image_id or ""
    attributes = {"image": image, "name": target.name, "service": service}
    actions = ACTIONS.get(step.action, ())
    if isinstance(target, model.DesiredContainer) and not target.start:
        actions = tuple(a for a in actions if a != "start")  # `create`: made, not started
    # docker's id where the step knows it (a container made by the step has none yet).
    resource = getattr(target, "id", "") or target.name
    return [events.Event("container", project, action, resource=resource,
                         attributes=attributes)
            for action in actions]


def for_exit(project: str, exit_file: Path, name: str | None = None) -> events.Event | None:
    """`die` when conmon wrote a container's exit code (the file is named after its id);
    `name`: the container's (default: its id, as for a container made before ids)."""
    try:
        code = exit_file.read_text().strip()
    except OSError:
        return None  # already removed with its container
    name = name or exit_file.name
    return events.Event("container", project, "die", resource=exit_file.name,
                        attributes={"exitCode": code, "name": name,
                                    "service": _service(project, name)})


def _service(project: str, name: str) -> str:
    """`shop-web-1` -> `web`; a container_name says nothing of its service."""
    if not naming.of_project(project, name):
        return ""
    service, _, replica = name[len(project) + 1:].rpartition("-")
    return service if replica.isdigit() else ""
