"""user: resolution against an image's /etc/passwd and /etc/group, as docker does it."""

from __future__ import annotations

import pytest

from runtime.oci import users

PASSWD = "root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33::/var/www:/bin/false\napp:x:1000:1000::/home/app:/bin/sh\n"
GROUP = "root:x:0:\nwww-data:x:33:app\nstaff:x:50:app,www-data\napp:x:1000:\n"


@pytest.mark.parametrize("spec, expected", [
    ("", users.User(0, 0, (), "/root")),
    ("app", users.User(1000, 1000, (33, 50), "/home/app")),
    ("33", users.User(33, 33, (50,), "/var/www")),
    ("app:staff", users.User(1000, 50, (), "/home/app")),
    ("4242", users.User(4242, 0, (), "/")),  # numeric ids need no entry
    ("4242:4243", users.User(4242, 4243, (), "/")),
])
def test_resolve(spec, expected):
    assert users.resolve(spec, PASSWD, GROUP) == expected


def test_unknown_names_are_errors_that_say_which():
    with pytest.raises(users.UserError, match="user 'ghost': no such user"):
        users.resolve("ghost", PASSWD, GROUP)
    with pytest.raises(users.UserError, match="group 'ghosts': no such group"):
        users.resolve("app:ghosts", PASSWD, GROUP)


def test_symlinked_passwd_is_not_followed_out_of_the_rootfs(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").symlink_to("/etc/passwd")
    with pytest.raises(users.UserError):
        users.resolve_in_rootfs("root", tmp_path)  # the host has root; the image has nothing
    assert users.resolve_in_rootfs("0", tmp_path).uid == 0


def test_a_symlinked_etc_resolves_inside_the_rootfs_never_on_the_host(tmp_path):
    host = tmp_path / "host-etc"
    host.mkdir()
    (host / "passwd").write_text("ghost:x:7:7::/home/ghost:/bin/sh\n")
    root = tmp_path / "root"
    (root / "real").mkdir(parents=True)
    (root / "real" / "passwd").write_text("app:x:1000:1000::/home/app:/bin/sh\n")
    (root / "etc").symlink_to(str(host))  # the host's path: the container has no such dir
    with pytest.raises(users.UserError):
        users.resolve_in_rootfs("ghost", root)
    (root / "etc").unlink()
    (root / "etc").symlink_to("/real")  # inside the image, as the container sees it
    assert users.resolve_in_rootfs("app", root).uid == 1000
