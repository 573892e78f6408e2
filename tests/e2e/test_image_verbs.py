"""What the image store fills does not stay forever: `pcompose image rm|prune|inspect|tag` and
`pcompose system df|prune` through the CLI, with docker's output, conflicts and exit codes."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import tarfile
from pathlib import Path

from reconciler.cli import listing
from tests.support.oci_image import LayerBuilder

SLEEPER = """services:
  app:
    image: busybox
    command: ["sleep", "100000"]
    stop_signal: SIGKILL
"""


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def docker_archive(path: Path, layers: list[bytes], tags: list[str], config: dict | None = None,
                   diff_ids: list[str] | None = None) -> tuple[Path, bytes]:
    """A `docker save` tar of uncompressed layer tars; `diff_ids` (default: theirs) may lie."""
    doc = {"architecture": "amd64", "os": "linux", "created": "2026-02-03T04:05:06Z",
           "config": config or {"Cmd": ["sh"]},
           "rootfs": {"type": "layers", "diff_ids": diff_ids or [sha(t) for t in layers]}}
    data = json.dumps(doc).encode()
    members = {f"{sha(data)[7:]}.json": data}
    names = [f"{i:064x}/layer.tar" for i in range(len(layers))]
    members.update(zip(names, layers))
    members["manifest.json"] = json.dumps(
        [{"Config": f"{sha(data)[7:]}.json", "RepoTags": tags, "Layers": names}]).encode()
    with tarfile.open(path, "w") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return path, data


def chain_ids(diff_ids: list[str]) -> list[str]:
    chain: list[str] = []
    for diff_id in diff_ids:
        chain.append(diff_id if not chain else sha(f"{chain[-1]} {diff_id}".encode()))
    return chain


def layer_dirs(stack, diff_ids: list[str]) -> list[Path]:
    return [stack.root / "layers" / c[7:] for c in chain_ids(diff_ids)]


def store_bytes(stack) -> int:
    """What the image store takes: its blobs and unpacked layers (regular files, as du counts)."""
    places = [stack.root / "images" / "blobs"]
    places += [p for p in (stack.root / "layers").iterdir() if len(p.name) == 64]
    return sum(tree_bytes(p) for p in places)


def tree_bytes(path: Path) -> int:
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            st = os.lstat(os.path.join(folder, name))
            total += st.st_size if stat.S_ISREG(st.st_mode) else 0
    return total


def image_ids(stack) -> dict[str, str]:
    """Repository:tag -> image id, as `images --format json` lists them."""
    return {f"{e['Repository']}:{e['Tag']}": e["ID"]
            for e in json.loads(stack.pc("images", "--format", "json").stdout)}


def ps_all(stack) -> dict[str, dict]:
    rows = [json.loads(line) for line in stack.pc("ps", "-a", "--format", "json").stdout.splitlines()]
    return {row["Name"]: row for row in rows}


def spare_image(stack, tmp_path: Path, name: str = "spare:1") -> list[str]:
    """An image no container uses, of two layers of its own; their diff ids."""
    layers = [LayerBuilder().file("spare/a", "a" * 3000).build().tar,
              LayerBuilder().file("spare/b", "b" * 5000).build().tar]
    path, _ = docker_archive(tmp_path / "spare.tar", layers, [name])
    stack.pc("image", "load", "-i", str(path))
    return [sha(t) for t in layers]


def test_tag_then_rm_of_one_tag_keeps_the_image(stack):
    before = image_ids(stack)["busybox:latest"]
    tagged = stack.pc("image", "tag", "busybox", "mine/box:v1")
    assert tagged.stdout == "" and tagged.stderr == ""
    ids = image_ids(stack)
    assert ids["mine/box:v1"] == ids["busybox:latest"] == before

    removed = stack.pc("image", "rm", "mine/box:v1")
    assert removed.stdout == "Untagged: mine/box:v1\n"
    assert image_ids(stack) == {"busybox:latest": before}
    [shown] = json.loads(stack.pc("image", "inspect", "busybox").stdout)
    assert shown["Id"] == before and shown["RepoTags"] == ["busybox:latest"]
    assert all(d.is_dir() for d in layer_dirs(stack, shown["RootFS"]["Layers"]))

    missing = stack.pc("image", "tag", "absent:1", "x:1", check=False)
    assert missing.returncode == 1 and "no such image: absent:1" in missing.stderr
    gone = stack.pc("image", "rm", "mine/box:v1", check=False)
    assert gone.returncode == 1 and "no such image: mine/box:v1" in gone.stderr


def test_rm_of_an_image_a_container_uses_is_refused_with_dockers_message(stack):
    stack.write(SLEEPER)
    stack.pc("up", "-d")
    name = f"{stack.project}-app-1"
    container = ps_all(stack)[name]["ID"][:12]  # docker names it by its short ID
    image_id = image_ids(stack)["busybox:latest"]
    short = image_id[7:19]

    refused = stack.pc("image", "rm", "busybox", check=False)
    assert refused.returncode == 1 and refused.stdout == ""
    assert (f'conflict: unable to remove repository reference "busybox" (must force) - container '
            f"{container} is using its referenced image {short}") in refused.stderr
    by_id = stack.pc("image", "rm", "-f", short, check=False)
    assert by_id.returncode == 1
    assert (f"conflict: unable to delete {short} (cannot be forced) - image is being used by "
            f"running container {container}") in by_id.stderr

    # Forced, the name goes and the image stays for the container that runs it, as docker keeps it.
    forced = stack.pc("image", "rm", "-f", "busybox")
    assert forced.stdout == "Untagged: busybox:latest\n"
    assert image_ids(stack) == {"<none>:<none>": image_id}
    assert ps_all(stack)[name]["State"] == "running"

    stack.pc("stop", "app")
    stopped = stack.pc("image", "rm", short, check=False)
    assert stopped.returncode == 1
    assert (f"conflict: unable to delete {short} (must be forced) - image is being used by "
            f"stopped container {container}") in stopped.stderr
    assert image_ids(stack) == {"<none>:<none>": image_id}

def test_prune_a_removes_an_unused_image_and_its_layers(stack, tmp_path):
    stack.write(SLEEPER)
    stack.pc("up", "-d")  # busybox is in use: it stays
    diff_ids = spare_image(stack, tmp_path)
    spare = image_ids(stack)["spare:1"]
    dirs = layer_dirs(stack, diff_ids)
    assert all(d.is_dir() for d in dirs)
    # A load refused after its blobs were copied in leaves them to the next prune.
    blobs = stack.root / "images" / "blobs" / "sha256"
    kept = {p.name for p in blobs.iterdir()}
    bad, _ = docker_archive(tmp_path / "bad.tar", [LayerBuilder().file("x", "x").build().tar],
                            ["bad:1"], diff_ids=[sha(b"not this layer")])
    assert stack.pc("image", "load", "-i", str(bad), check=False).returncode == 1
    assert {p.name for p in blobs.iterdir()} > kept

    dangling = stack.pc("image", "prune", "-f")
    assert dangling.stdout.startswith("Total reclaimed space: ") and dangling.stdout != (
        "Total reclaimed space: 0B\n")
    assert {p.name for p in blobs.iterdir()} == kept
    assert "spare:1" in image_ids(stack) and all(d.is_dir() for d in dirs)

    before = store_bytes(stack)
    pruned = stack.pc("image", "prune", "-a", "-f").stdout
    assert pruned.startswith(f"Deleted Images:\nuntagged: spare:1\ndeleted: {spare}\n")
    assert [line for line in pruned.splitlines() if line.startswith("deleted: ")][1:] == [
        f"deleted: {c}" for c in reversed(chain_ids(diff_ids))]
    assert pruned.endswith(f"\n\nTotal reclaimed space: "
                           f"{listing.human_size(before - store_bytes(stack))}\n")
    assert not any(d.exists() for d in dirs)
    assert list(image_ids(stack)) == ["busybox:latest"]


def test_image_inspect_shows_the_loaded_config(stack, tmp_path):
    config = {"Env": ["PATH=/bin", "MODE=test"], "Cmd": ["serve", "--port", "80"],
              "Entrypoint": ["/bin/entry"], "WorkingDir": "/srv", "User": "1000:1000",
              "Labels": {"team": "blue"}, "ExposedPorts": {"80/tcp": {}}, "StopSignal": "SIGINT",
              "Volumes": {"/data": {}}}
    layer = LayerBuilder().file("srv/page", "hello").build().tar
    path, data = docker_archive(tmp_path / "cfg.tar", [layer], ["inspected:1"], config)
    stack.pc("image", "load", "-i", str(path))

    [shown] = json.loads(stack.pc("image", "inspect", "inspected:1").stdout)
    assert shown["Id"] == sha(data)
    assert shown["RepoTags"] == ["inspected:1"]
    assert shown["RepoDigests"][0].startswith("inspected@sha256:")
    assert shown["Created"] == "2026-02-03T04:05:06Z"
    assert (shown["Architecture"], shown["Os"]) == ("amd64", "linux")
    assert shown["Config"] == config
    assert shown["RootFS"] == {"Type": "layers", "Layers": [sha(layer)]}
    assert isinstance(shown["Size"], int) and shown["Size"] >= len(layer)

    templated = stack.pc("image", "inspect", "-f", "{{.Config.WorkingDir}} {{json .Config.Labels}}",
                         "inspected:1", sha(data)[7:19])
    assert templated.stdout == '/srv {"team":"blue"}\n' * 2
    missing = stack.pc("image", "inspect", "absent:1", check=False)
    assert (missing.returncode, missing.stdout) == (1, "[]\n")
    assert "no such image: absent:1" in missing.stderr


def df_rows(stack) -> dict[str, dict]:
    rows = [json.loads(line) for line in stack.pc("system", "df", "--format", "json").stdout.splitlines()]
    return {row["Type"]: row for row in rows}


def test_system_df_counts_and_system_prune_leaves_a_running_stack(stack, tmp_path):
    stack.write(SLEEPER + "    volumes: [/cache]\n")
    stack.pc("up", "-d")
    app = f"{stack.project}-app-1"
    stack.pc("exec", "-T", "app", "sh", "-c", "head -c 5000 /dev/zero > /big; head -c 3000 /dev/zero > /cache/f")
    job = f"{stack.project}-job"
    stack.pc("run", "--name", job, "-T", "app", "sh", "-c", "head -c 700 /dev/zero > /out")
    anonymous = stack.pc("volume", "create").stdout.strip()
    stack.pc("network", "create", "idle")
    spare_image(stack, tmp_path)
    running = ps_all(stack)[app]
    assert ps_all(stack)[job]["State"] == "exited"

    table = stack.pc("system", "df").stdout.splitlines()
    assert table[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    assert [line.split()[0] for line in table[1:]] == ["Images", "Containers", "Local", "Build"]
    rows = df_rows(stack)
    ids = {c: ps_all(stack)[c]["ID"] for c in (app, job)}  # a container's root is by its ID
    uppers = {c: tree_bytes(stack.root / "rootfs" / ids[c] / "upper") for c in (app, job)}
    assert uppers[app] >= 5000 and uppers[job] >= 700
    total = sum(uppers.values())
    assert rows["Containers"] == {
        "Type": "Containers", "TotalCount": "2", "Active": "1", "Size": listing.human_size(total),
        "Reclaimable": f"{listing.human_size(uppers[job])} ({uppers[job] * 100 // total}%)"}
    volumes = rows["Local Volumes"]
    assert (volumes["TotalCount"], volumes["Active"]) == ("3", "2")  # the job's volume is still its
    assert volumes["Size"] == "3kB" and volumes["Reclaimable"] == "0B (0%)"
    images = rows["Images"]
    assert (images["TotalCount"], images["Active"]) == ("2", "1")
    before = store_bytes(stack)
    assert images["Size"] == listing.human_size(before)
    assert rows["Build Cache"] == {"Type": "Build Cache", "TotalCount": "0", "Active": "0",
                                   "Size": "0B", "Reclaimable": "0B"}

    pruned = stack.pc("system", "prune", "-a", "-f", "--volumes").stdout
    freed_images = before - store_bytes(stack)
    assert freed_images > 0
    assert images["Reclaimable"] == f"{listing.human_size(freed_images)} ({freed_images * 100 // before}%)"
    sections = pruned.split("\n\n")
    assert sections[0] == f"Deleted Containers:\n{ids[job]}"
    assert sections[1] == "Deleted Networks:\nidle"
    deleted_volumes = sections[2].splitlines()
    assert deleted_volumes[0] == "Deleted Volumes:"
    assert anonymous in deleted_volumes and len(deleted_volumes) == 3  # and the job's anonymous one
    assert sections[3].startswith("Deleted Images:\nuntagged: spare:1\n")
    assert sections[4] == f"Total reclaimed space: {listing.human_size(freed_images + uppers[job])}\n"

    # The running stack is as it was: its container, its image, its volume.
    after = ps_all(stack)
    assert list(after) == [app]
    assert (after[app]["State"], after[app]["CreatedAt"]) == ("running", running["CreatedAt"])
    assert list(image_ids(stack)) == ["busybox:latest"]
    assert stack.pc("exec", "-T", "app", "wc", "-c", "/cache/f").stdout.split()[0] == "3000"
    rows = df_rows(stack)
    assert (rows["Images"]["TotalCount"], rows["Images"]["Reclaimable"]) == ("1", "0B (0%)")
    assert (rows["Containers"]["TotalCount"], rows["Local Volumes"]["TotalCount"]) == ("1", "1")
