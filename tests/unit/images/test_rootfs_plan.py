"""A container root is planned without touching the system: paths as docker inspect reports them."""

import pytest

from runtime import rootfs

A, B = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def test_plan_lists_the_top_layer_first(tmp_path):
    m = rootfs.plan(tmp_path, "web-1", (A, B))
    assert m.lower_dirs == (f"{tmp_path}/layers/{'b' * 64}/diff", f"{tmp_path}/layers/{'a' * 64}/diff")
    assert m.graph_driver_data() == {
        "LowerDir": ":".join(m.lower_dirs),
        "UpperDir": f"{tmp_path}/rootfs/web-1/upper",
        "WorkDir": f"{tmp_path}/rootfs/web-1/work",
        "MergedDir": f"{tmp_path}/rootfs/web-1/merged",
    }
    assert list(tmp_path.iterdir()) == []


def test_an_image_without_layers_gets_an_empty_lower(tmp_path):
    assert rootfs.plan(tmp_path, "c", ()).lower_dirs == (f"{tmp_path}/rootfs/c/empty",)


@pytest.mark.parametrize("bad", ["", "../x", "a/b", ".hidden", "x" * 200])
def test_bad_container_ids_are_refused(tmp_path, bad):
    with pytest.raises(rootfs.RootfsError, match="invalid container id"):
        rootfs.plan(tmp_path, bad, ())
