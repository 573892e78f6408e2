"""Helpers the tests share: busybox root filesystems, unique names, cleanup."""
