"""Image store: content-addressed blobs, registry client, archive import, layer unpack.

The names below are the API the controllers use; each lives in the module named beside it.
"""

from runtime.images import (
    archive,
    auth,
    changes,
    gc,
    manifest,
    pull as _pull,
    reference,
    registry,
    store,
    unpack,
)

Store = store.Store
ImageRecord = store.ImageRecord
LayerInfo = store.LayerInfo
ImageConfig = manifest.ImageConfig
Platform = manifest.Platform
Credentials = auth.Credentials
Options = registry.Options
Progress = _pull.Progress
StoreError = store.StoreError

pull = _pull.pull
ensure = _pull.ensure
login = _pull.login
load = archive.load
import_rootfs = archive.import_rootfs
remove_image = gc.remove_image
collect = gc.collect


def resolve(s: store.Store, ref: str) -> store.ImageRecord | None:
    """The image a reference or id names, or None."""
    return s.resolve(ref)


def list_images(s: store.Store) -> list[store.ImageRecord]:
    return s.list_images()
