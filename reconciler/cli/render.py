"""How the stack verbs print: docker-style tables, JSON lines, progress lines and log prefixes.

Pure functions of what they are given (no I/O but the writers at the end), so their output is
tested as text. Times are passed in (`now`) rather than read here.
"""

from __future__ import annotations

import datetime as dt
import json
import sys

from reconciler.cli import progress
from runtime import labels as label_keys, names as naming

# docker compose's log prefix colours, in the order containers get them: cyan, yellow, green,
# magenta, blue, then the same bold ("intense").
COLOURS = ("36", "33", "32", "35", "34", "36;1", "33;1", "32;1", "35;1", "34;1")


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Columns padded to their widest cell and three spaces apart, like docker's tabwriter."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    lines = ["   ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=False)).rstrip()
             for row in [headers, *rows]]
    return "\n".join(lines) + "\n"


def human_duration(seconds: float) -> str:
    """docker's units.HumanDuration: `Less than a second`, `5 seconds`, `About a minute`, ..."""
    s = int(seconds)
    if s < 1:
        return "Less than a second"
    if s == 1:
        return "1 second"
    if s < 60:
        return f"{s} seconds"
    minutes = s // 60
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(s / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{hours // 24 // 365} years"


def ago(when: dt.datetime | None, now: dt.datetime) -> str:
    return f"{human_duration((now - when).total_seconds())} ago" if when else ""


def status(view, now: dt.datetime) -> str:
    """The STATUS column: `Up 2 seconds (healthy)`, `Exited (0) 3 minutes ago`, `Created`."""
    if view.state in ("running", "paused"):
        text = f"Up {human_duration((now - (view.started or now)).total_seconds())}"
        if view.state == "paused":
            return text + " (Paused)"
        return text + (f" ({view.health})" if view.health else "")
    if view.state == "exited":
        return f"Exited ({view.exit_code}) {ago(view.finished or view.created, now)}".rstrip()
    return view.state.capitalize()


def ellipsis(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def command(view, trunc: bool = True) -> str:
    """Go's strconv.Quote of the command line, cut to 20 characters first (docker ps)."""
    text = " ".join(view.command)
    return json.dumps(ellipsis(text, 20) if trunc else text, ensure_ascii=False)


def ports(view) -> str:
    """`0.0.0.0:8080->80/tcp, 443/tcp`: published ports, then ports only exposed."""
    out = []
    for host_ip, published, target, protocol in view.ports:
        if published:
            out.append(f"{_host(host_ip)}:{published}->{target}/{protocol}")
        else:
            out.append(f"{target}/{protocol}")
    return ", ".join(out)


def _host(ip: str) -> str:
    ip = ip or "0.0.0.0"
    return f"[{ip}]" if ":" in ip else ip


def created_at(when: dt.datetime) -> str:
    """Go's time.Time.String() of a local time with whole seconds: `2024-05-02 12:21:53 +0400 +04`."""
    local = when.astimezone()
    zone = local.tzname() or local.strftime("%z")
    return f"{local:%Y-%m-%d %H:%M:%S %z} {zone}"


def ps_table(views, now: dt.datetime, trunc: bool = True) -> str:
    rows = [[v.name, v.image, command(v, trunc), v.service, ago(v.created, now), status(v, now),
             ports(v)] for v in sorted(views, key=lambda v: v.name)]
    heads = ["NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS", "PORTS"]
    if any(getattr(v, "node", "") for v in views):  # in a cluster: the node that runs it
        rows = [[*row, v.node] for row, v in zip(rows, sorted(views, key=lambda v: v.name),
                                                 strict=True)]
        heads.append("NODE")
    return table(heads, rows)


def ps_json(view, now: dt.datetime, trunc: bool = True) -> dict:
    """One line of `ps --format json`: docker's keys, in their (alphabetical) order and types."""
    # Every label of the container; compose's own from the view's fields when the agent that
    # sent it is older than labels in views.
    labels = {**label_keys.container(view.project, view.service, view.replica, view.oneoff),
              **dict(getattr(view, "labels", ()) or ())}
    return {
        "Command": command(view, trunc),
        "CreatedAt": created_at(view.created),
        "ExitCode": view.exit_code or 0,
        "Health": view.health,
        "ID": view.id,  # whole, as docker compose's JSON has it
        "Image": view.image,
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        "LocalVolumes": "0",
        "Mounts": "",
        "Name": view.name,
        "Names": view.name,
        "Networks": ",".join(view.networks),
        **({"Node": view.node} if getattr(view, "node", "") else {}),
        "Ports": ports(view),
        "Project": view.project,
        # A port published on every address shows 0.0.0.0, as docker's engine reports it.
        "Publishers": [{"URL": ip or ("0.0.0.0" if published else ""), "TargetPort": target,
                        "PublishedPort": published or 0,
                        "Protocol": protocol}
                       for ip, published, target, protocol in view.ports] or None,
        "RunningFor": ago(view.created, now),
        "Service": view.service,
        "Size": "0B",
        "State": view.state,
        "Status": status(view, now),
    }


def project_status(states: list[str]) -> str:
    """`ls`'s STATUS: `exited(1), running(2)`, counts per state, states sorted."""
    counts: dict[str, int] = {}
    for state in states:
        counts[state] = counts.get(state, 0) + 1
    return ", ".join(f"{s}({n})" for s, n in sorted(counts.items()))


def ls_table(projects: list[dict]) -> str:
    return table(["NAME", "STATUS", "CONFIG FILES"],
                 [[p["Name"], p["Status"], p["ConfigFiles"]] for p in projects])


def size(n: float) -> str:
    """docker's units.BytesSize: 1024-based, 3 significant digits: `1.5MiB`."""
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n, i = n / 1024, i + 1
    return f"{n:.4g}{units[i]}" if i else f"{int(n)}B"


# -- progress lines
# What a step's start and end look like in docker compose's progress output.
STARTING = {"create": "Creating", "recreate": "Recreate", "update": "Updating",
            "start": "Starting", "unpause": "Starting", "restart": "Restarting",
            "remove": "Removing", "await": "Waiting"}
DONE = {"create": ("Created", "Started"), "recreate": ("Recreated", "Started"),
        "update": ("Updated",), "start": ("Started",), "unpause": ("Started",),
        "restart": ("Restarted",), "remove": ("Removed",), "await": ("Healthy",)}
ONLY_CREATED = ("network", "volume")
# An await step's reason (the plan's) when it waits for service_completed_successfully: its
# containers end `Exited`, not `Healthy`, in docker compose's words.
COMPLETED = "completed successfully"


def resource_title(project: str, resource: str, container_names: dict[str, str]) -> str:
    """`service:web:1` -> `Container shop-web-1`; `network:default` -> `Network shop_default`."""
    kind, _, rest = resource.partition(":")
    if kind == "service":
        name = container_names.get(resource)
        if name is None:
            service, _, replica = rest.partition(":")
            name = naming.container(project, service, int(replica or 1))
        return f"Container {name}"
    if kind in ("network", "volume"):
        return f"{kind.capitalize()} {container_names.get(resource, f'{project}_{rest}')}"
    return resource


def step_lines(project: str, event, container_names: dict[str, str]) -> list[str]:
    """The progress lines one step event makes (none for steps a user does not see). An
    await step's event may name the `containers` it waits for: a line for each, as docker
    compose prints them."""
    if event.type != "step" or event.action == "require":
        return []
    titles = [f"Container {name}" for name in getattr(event, "containers", None) or ()] \
        or [resource_title(project, event.resource, container_names)]
    kind = event.resource.partition(":")[0]
    if event.status == "started":
        words = (STARTING.get(event.action, event.action),)
    elif event.status == "done":
        words = DONE.get(event.action, (event.action,))
        if kind in ONLY_CREATED:
            words = words[:1]
        if event.action == "await" and event.message == COMPLETED:
            words = ("Exited",)
    elif event.status == "failed":
        words = (f"Error {event.message}".rstrip(),)
    else:
        return []
    return [f"{title}  {word}" for title in titles for word in words]


class Progress:
    """What a verb reports as it goes (`Container x  Started`, docker compose's words), shown
    as this run's --progress and --ansi say (progress.py): on a terminal one block redrawn in
    place (` ✔ Container x  Started  0.3s` under `[+] Running n/m`), plain lines otherwise,
    JSON events, or nothing. The block is drawn on stderr unless another stream is given."""

    def __init__(self, stream=None, title: str | None = None) -> None:
        self.stream = stream or sys.stderr
        self.title = title
        self._writer = None

    def _shown(self):
        if self._writer is None:
            self._writer = progress.writer(self.stream, self.title)
        progress.track(self)
        return self._writer

    @property
    def mode(self) -> str:
        """tty, plain, json or quiet: what this run shows."""
        return self._shown().mode

    def line(self, text: str) -> None:
        self.event(progress.parse_line(text))

    def event(self, event: progress.Event) -> None:
        self._shown().event(event)

    def close(self) -> None:
        """End the block (it stays on screen): logs or other output may follow; a later
        line begins a new block."""
        if self._writer is not None:
            self._writer.close()

    def begin(self, title: str) -> None:
        """A new block under another header (`Stopping` once an attached `up` is stopped)."""
        self.close()
        self.title = title
        if isinstance(self._writer, progress.Block):
            self._writer.title = title


class PullRows:
    """The agent's `pull` lines while `up` or `create` pulls an image: a row for the image,
    `Pulling` until every layer under it is done, then `Pulled`; a row per layer under it
    (Waiting, Downloading with its bytes, Verifying Checksum, Download complete, Extracting,
    Pull complete, Already exists)."""

    def __init__(self, shown: Progress) -> None:
        self.shown = shown
        self.layers: dict[str, dict[str, str]] = {}  # image -> layer -> its last word

    def line(self, line: dict) -> None:
        image, layer, status = line["image"], line["layer"], line["status"]
        layers = self.layers.get(image)
        if layers is None:
            layers = self.layers[image] = {}
            self.shown.event(progress.Event(image, "Pulling"))
        layers[layer] = status
        self.shown.event(progress.Event(layer, status, progress.word_status(status),
                                        parent=image, current=line.get("current", 0),
                                        total=line.get("total", 0)))
        # Download complete is a layer's pause, not its end: it is unpacked next.
        if all(s in ("Pull complete", "Already exists") for s in layers.values()):
            self.shown.event(progress.Event(image, "Pulled", progress.DONE))


class BuildLines:
    """A build's progress from BuildKit's plain lines, as `pcompose build` streams them:
    `#3 [stage 1/2] RUN make` begins step 3 (a row of the `[+] Building` block), `#3 DONE
    0.4s` and `#3 CACHED` end it, `#3 ERROR: ...` fails it; the step's other `#3 0.51 ...`
    lines are its output: on a terminal its last TAIL lines are shown under its row while it
    runs, and go when it ends (docker's collapsing block). Off a terminal (plain) every line
    is written as it came, as docker's `--progress plain` does; in JSON each step's changes
    are events. Lines of no step (warnings) are shown below the block once it ends."""

    TAIL = 6

    def __init__(self, shown: Progress) -> None:
        self.shown = shown
        self.steps: dict[str, str] = {}  # step number -> its row's name
        self.output: dict[str, list[str]] = {}  # step number -> its last lines of output
        self.other: list[str] = []

    def line(self, text: str) -> None:
        if self.shown.mode == "plain":
            print(text, file=self.shown.stream, flush=True)
            return
        number, _, rest = text.partition(" ")
        if not number.startswith("#") or not number[1:].isdigit():
            self.other.append(text)  # not a step's line: the block has no row for it
            return
        name = self.steps.get(number)
        if name is None:
            name = self.steps[number] = f"{number} {rest}".rstrip()
            self.shown.event(progress.Event(name, "Building"))
        elif rest.startswith("DONE"):
            self.shown.event(progress.Event(name, "Done", progress.DONE))
        elif rest == "CACHED":
            self.shown.event(progress.Event(name, "Cached", progress.DONE))
        elif rest.startswith("ERROR"):
            self.shown.event(progress.Event(name, "Error", progress.ERROR,
                                            rest[len("ERROR"):].lstrip(": ")))
        elif self.shown.mode == "tty":
            seconds, _, output = rest.partition(" ")  # `0.512 cc -o app app.c`
            tail = self.output.setdefault(number, [])
            output = output if seconds.replace(".", "", 1).isdigit() else rest
            tail.append("".join(c if c.isprintable() else " " for c in output))  # no escapes
            del tail[:-self.TAIL]
            self.shown.event(progress.Event(name, "Building", detail="\n".join(tail)))

    def close(self) -> None:
        """End the block; then the lines that belonged to no step."""
        self.shown.close()
        if self.shown.mode == "tty":
            for text in self.other:
                print(text, file=self.shown.stream, flush=True)
        self.other.clear()


def container_event(event, service: str, as_json: bool) -> str:
    """docker compose events' line for a container event: text, or its JSON object."""
    when = dt.datetime.fromtimestamp(event.time, dt.UTC)
    if as_json:
        return json.dumps({"action": event.status, "attributes": event.attributes,
                           "id": event.resource, "service": service,
                           "time": when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                           "type": "container"}, sort_keys=True)
    attributes = ", ".join(f"{k}={v}" for k, v in sorted(event.attributes.items())
                           if k != "service")
    local = dt.datetime.fromtimestamp(event.time).strftime("%Y-%m-%d %H:%M:%S.%f")
    return f"{local} container {event.status} {event.resource} ({attributes})"


# -- log prefixes
def short_name(project: str, name: str) -> str:
    """`shop-web-1` -> `web-1`: docker compose names containers in log lines without the
    project; a `container_name:` is kept as written."""
    return name[len(project) + 1:] if project and naming.of_project(project, name) else name


def log_prefix(name: str, width: int, colour: str | None) -> str:
    """`web-1  | `: the name padded to `width`, one space more, then the bar, as docker
    compose writes it; the whole of it in the container's colour."""
    text = f"{name.ljust(width)}  | "
    return f"\x1b[{colour}m{text}\x1b[0m" if colour else text


def log_prefixes(names: list[str], colour: bool) -> dict[str, str]:
    """`name  | ` for each container, padded to the longest name, coloured in turn."""
    width = max((len(n) for n in names), default=0)
    return {name: log_prefix(name, width, COLOURS[i % len(COLOURS)] if colour else None)
            for i, name in enumerate(sorted(names))}


def prefix_for(name: str, known: dict[str, str], colour: bool) -> str:
    """A prefix for a container that joined later: same width rule, the next colour."""
    if name not in known:
        width = max([len(n) for n in known] + [len(name)])
        known[name] = log_prefix(name, width,
                                 COLOURS[len(known) % len(COLOURS)] if colour else None)
    return known[name]
