"""Image store: content-addressed blobs, registry client, archive import, layer unpack."""
