"""Host paths derived from a container's paths stay inside their root: a volume's subpath
cannot leave the volume through a planted symlink, and an image's symlink at a volume's
target cannot make pcompose copy host files into the volume."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.conftest import leftovers
from tests.support import busybox, oci_image

PLANTER = """
services:
  planter:
    image: busybox:latest
    command: ["true"]
    volumes: ["shared:/shared"]
  victim:
    image: busybox:latest
    command: ["sleep", "100000"]
    stop_signal: SIGKILL
    volumes:
      - {type: volume, source: shared, target: /appdata, volume: {subpath: appdata}}
volumes:
  shared: {}
"""


def plant(stack, script: str) -> None:
    """What a first container of the stack leaves in the shared volume."""
    stack.pc("run", "--rm", "-T", "planter", "sh", "-c", script)


def reaches(stack, service: str, script: str) -> bool:
    return stack.pc("exec", "-T", service, "sh", "-c", script, check=False).returncode == 0


def volume_dir(stack, key: str) -> Path:
    return stack.root / "volumes" / f"{stack.project}_{key}" / "_data"


def test_a_subpath_symlinked_out_of_the_volume_is_refused(stack, canary):
    stack.write(PLANTER)
    plant(stack, f"ln -s {canary.path} /shared/appdata")
    done = stack.pc("up", "-d", "victim", check=False)
    assert done.returncode != 0
    assert "subpath 'appdata'" in done.stderr + done.stdout
    assert "outside the volume" in done.stderr + done.stdout
    assert canary.untouched()


def test_a_subpath_swapped_for_a_symlink_while_in_use_stays_the_dir_that_was_mounted(stack, canary):
    stack.write(PLANTER)
    plant(stack, "mkdir /shared/appdata && echo mine > /shared/appdata/own.txt")
    stack.pc("up", "-d", "victim")
    plant(stack, f"mv /shared/appdata /shared/old && ln -s {canary.path} /shared/appdata")
    stack.pc("restart", "victim")  # runc mounts the volume afresh from the bundle
    assert not reaches(stack, "victim", "cat /appdata/secret.txt")
    assert not reaches(stack, "victim", "ls /appdata/secret.txt")
    reaches(stack, "victim", "echo pwned > /appdata/pwned; rm -f /appdata/secret.txt")
    assert canary.untouched()


def test_a_subpath_missing_from_the_volume_is_an_error_that_says_so(stack):
    stack.write(PLANTER)
    done = stack.pc("up", "-d", "victim", check=False)
    assert done.returncode != 0
    assert "subpath 'appdata' does not exist" in done.stderr + done.stdout


def test_a_subpath_that_is_a_dir_of_the_volume_mounts_and_leaves_no_mount_behind(stack):
    stack.write(PLANTER)
    plant(stack, "mkdir -p /shared/appdata && echo kept > /shared/appdata/f")
    stack.pc("up", "-d", "victim")
    assert stack.pc("exec", "-T", "victim", "cat", "/appdata/f").stdout == "kept\n"
    stack.pc("exec", "-T", "victim", "sh", "-c", "echo new > /appdata/g")
    assert (volume_dir(stack, "shared") / "appdata" / "g").read_text() == "new\n"
    stack.pc("down", "-v")
    assert leftovers(stack) == []
    assert not any(stack.run_dir.glob("subpaths/*"))


def load_image(stack, tmp_path: Path, name: str, layer: oci_image.Layer) -> str:
    archive = oci_image.write_docker_archive(
        tmp_path / f"{name}.tar", [oci_image.busybox_layer(), layer], [f"{name}:latest"])
    stack.pc("image", "load", "-q", "-i", str(archive))
    return f"{name}:latest"


def volume_at_data(image: str) -> str:
    return f"""
services:
  app:
    image: {image}
    command: ["sleep", "100000"]
    stop_signal: SIGKILL
    volumes: ["data:/data"]
volumes:
  data: {{}}
"""


def test_an_image_symlink_to_etc_at_a_volume_target_copies_the_images_etc_not_the_hosts(
        stack, tmp_path):
    image = load_image(stack, tmp_path, "etc-link", oci_image.LayerBuilder().symlink("data", "/etc").build())
    stack.write(volume_at_data(image))
    stack.pc("up", "-d")
    data = volume_dir(stack, "data")
    # The image's own /etc (runc adds the files it binds at /etc, as the volume is /etc now).
    assert {p.name for p in data.iterdir()} <= {"passwd", "group", "hosts", "resolv.conf", "hostname"}
    assert (data / "passwd").read_text() == busybox.PASSWD
    assert stack.pc("exec", "-T", "app", "cat", "/etc/passwd").stdout == busybox.PASSWD


def test_an_image_symlink_climbing_out_of_the_root_at_a_volume_target_copies_nothing(
        stack, canary, tmp_path):
    climb = "../" * 16 + str(canary.path).lstrip("/")
    image = load_image(stack, tmp_path, "climb-link", oci_image.LayerBuilder().symlink("data", climb).build())
    stack.write(volume_at_data(image))
    stack.pc("up", "-d")
    assert not any(volume_dir(stack, "data").iterdir())
    assert not reaches(stack, "app", "cat /data/secret.txt")
    reaches(stack, "app", "echo pwned > /data/pwned")
    assert canary.untouched()


def test_an_images_real_dir_at_a_volume_target_is_copied_into_the_new_volume(stack, tmp_path):
    layer = (oci_image.LayerBuilder().dir("data", mode=0o750, uid=1000, gid=1000)
             .file("data/hello.txt", "from the image\n").symlink("data/link", "/etc/passwd")
             .dir("data/sub").file("data/sub/deep.txt", "deep\n", mode=0o600).build())
    image = load_image(stack, tmp_path, "real-dir", layer)
    stack.write(volume_at_data(image))
    stack.pc("up", "-d")
    data = volume_dir(stack, "data")
    assert (data / "hello.txt").read_text() == "from the image\n"
    assert (data / "sub" / "deep.txt").read_text() == "deep\n"
    assert (data / "sub" / "deep.txt").stat().st_mode & 0o777 == 0o600
    assert (data / "link").is_symlink() and str((data / "link").readlink()) == "/etc/passwd"
    assert (data.stat().st_uid, data.stat().st_mode & 0o777) == (1000, 0o750)
    assert stack.pc("exec", "-T", "app", "cat", "/data/hello.txt").stdout == "from the image\n"
