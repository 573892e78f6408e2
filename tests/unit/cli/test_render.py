"""What the stack verbs print, as text: docker's ps table and JSON, durations, ports, progress."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from reconciler.agent import events
from reconciler.cli import render

NOW = dt.datetime(2026, 5, 2, 12, 0, 0, tzinfo=dt.timezone.utc)


@dataclass(frozen=True)
class View:
    """The fields of controllers.services.ContainerView that rendering reads."""

    name: str = "shop-web-1"
    id: str = "shop-web-1"
    project: str = "shop"
    service: str = "web"
    replica: int = 1
    image: str = "busybox"
    command: tuple = ("sh", "-c", "echo hello; sleep 1000")
    state: str = "running"
    exit_code: int | None = None
    health: str = ""
    created: dt.datetime = NOW - dt.timedelta(seconds=5)
    started: dt.datetime | None = NOW - dt.timedelta(seconds=4)
    finished: dt.datetime | None = None
    pid: int = 42
    ports: tuple = (("127.0.0.1", 8001, 8000, "tcp"), ("", 0, 443, "tcp"))
    networks: tuple = ("shop_default",)
    oneoff: bool = False


def test_durations_read_as_docker_writes_them():
    assert [render.human_duration(s) for s in (0.5, 1, 59, 60, 119, 120, 3600, 7200, 86400 * 3)] \
        == ["Less than a second", "1 second", "59 seconds", "About a minute", "About a minute",
            "2 minutes", "About an hour", "2 hours", "3 days"]


def test_status_column():
    assert render.status(View(health="healthy"), NOW) == "Up 4 seconds (healthy)"
    assert render.status(View(state="paused"), NOW) == "Up 4 seconds (Paused)"
    exited = View(state="exited", exit_code=137, finished=NOW - dt.timedelta(minutes=3))
    assert render.status(exited, NOW) == "Exited (137) 3 minutes ago"
    assert render.status(View(state="created", started=None), NOW) == "Created"


def test_ps_table_columns_and_ports():
    text = render.ps_table([View(), View(name="shop-db-1", service="db", ports=())], NOW)
    lines = text.splitlines()
    assert lines[0].split() == ["NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS",
                                "PORTS"]
    assert lines[1].startswith("shop-db-1 ")  # sorted by name
    assert lines[2].endswith('"sh -c echo hello; s…"   web       5 seconds ago   Up 4 seconds   '
                             '127.0.0.1:8001->8000/tcp, 443/tcp')


def test_ps_json_has_docker_keys_and_types():
    obj = render.ps_json(View(), NOW)
    assert list(obj) == sorted(obj)
    assert obj["Publishers"] == [
        {"URL": "127.0.0.1", "TargetPort": 8000, "PublishedPort": 8001, "Protocol": "tcp"},
        {"URL": "", "TargetPort": 443, "PublishedPort": 0, "Protocol": "tcp"}]
    assert obj["Command"] == '"sh -c echo hello; s…"'
    assert obj["ExitCode"] == 0 and obj["LocalVolumes"] == "0"
    assert "com.docker.compose.service=web" in obj["Labels"].split(",")
    assert render.ps_json(View(ports=()), NOW)["Publishers"] is None


def test_ls_status_counts_states():
    assert render.project_status(["running", "exited", "running"]) == "exited(1), running(2)"


def test_progress_lines_of_step_events():
    def lines(resource, action, status, message=""):
        event = events.Event("step", "shop", status, resource, action, message)
        return render.step_lines("shop", event, {})

    assert lines("service:web:1", "create", "done") == ["Container shop-web-1  Created",
                                                         "Container shop-web-1  Started"]
    assert lines("network:default", "create", "done") == ["Network shop_default  Created"]
    assert lines("volume:data", "remove", "done") == ["Volume shop_data  Removed"]
    assert lines("service:web:2", "recreate", "started") == ["Container shop-web-2  Recreate"]
    assert lines("service:web:1", "create", "failed", "image busybox: not found") == [
        "Container shop-web-1  Error image busybox: not found"]
    assert lines("network:ext", "require", "done") == []


def test_log_prefixes_pad_to_the_longest_name():
    prefixes = render.log_prefixes(["shop-web-1", "shop-worker-1"], colour=False)
    assert prefixes == {"shop-web-1": "shop-web-1     | ", "shop-worker-1": "shop-worker-1  | "}
    coloured = render.log_prefixes(["a-1", "b-1"], colour=True)
    assert coloured["a-1"] != coloured["b-1"] and coloured["a-1"].startswith("\x1b[")
    assert render.prefix_for("shop-db-1", prefixes, False) == "shop-db-1      | "


def test_sizes():
    assert [render.size(n) for n in (512, 1536, 10 * 1024 ** 2, 3 * 1024 ** 3)] == \
        ["512B", "1.5KiB", "10MiB", "3GiB"]


def test_progress_on_a_terminal_marks_each_line():
    import os
    import pty
    import select

    master, slave = pty.openpty()
    try:
        with os.fdopen(slave, "w", closefd=False) as stream:
            progress = render.Progress(stream)
            progress.line("Container shop-web-1  Started")
            progress.line("Container shop-db-1  Error [Errno 2] no such file")
            progress.close()  # the final block, drawn whole
            stream.flush()
        # A pty hands over what was written in pieces: read until the reader would wait.
        chunks = []
        while select.select([master], [], [], 0.5)[0]:
            chunks.append(os.read(master, 4096))
        text = b"".join(chunks).decode()
    finally:
        os.close(master)
        os.close(slave)
    assert "✔" in text and "Container shop-web-1" in text
    assert "✘" in text and "[Errno 2] no such file" in text


def test_log_names_leave_the_project_out():
    assert render.short_name("shop", "shop-web-1") == "web-1"
    assert render.short_name("shop", "my-proxy") == "my-proxy"  # a container_name
