"""The keys of the labels and annotations pcompose writes on what it makes, in one place:
docker compose's `com.docker.compose.*` where docker compose has one (so `--filter label=`
and tools written for docker compose find them), `io.pcompose.*` for the runtime's own."""

from __future__ import annotations

# docker compose's labels, on containers (and on networks and volumes: project and key).
PROJECT = "com.docker.compose.project"
SERVICE = "com.docker.compose.service"
CONTAINER_NUMBER = "com.docker.compose.container-number"
ONEOFF = "com.docker.compose.oneoff"
CONFIG_HASH = "com.docker.compose.config-hash"
IMAGE = "com.docker.compose.image"
DEPENDS_ON = "com.docker.compose.depends_on"
VERSION = "com.docker.compose.version"
WORKING_DIR = "com.docker.compose.project.working_dir"
CONFIG_FILES = "com.docker.compose.project.config_files"
NETWORK = "com.docker.compose.network"
VOLUME = "com.docker.compose.volume"
# What docker itself marks a volume made without a name with.
DOCKER_ANONYMOUS = "com.docker.volume.anonymous"

# The runtime's own, which `inspect` and `ps` do not show among a container's labels. The
# container's identity is kept here too, where no user label can spoof it.
OWN_PREFIX = "io.pcompose."
OWN_PROJECT = "io.pcompose.project"
OWN_SERVICE = "io.pcompose.service"
OWN_REPLICA = "io.pcompose.replica"
OWN_CONFIG_HASH = "io.pcompose.config-hash"  # a container's, and a volume's definition's
OWN_IMAGE = "io.pcompose.image"
OWN_STOP_SIGNAL = "io.pcompose.stop-signal"
OWN_STOP_GRACE = "io.pcompose.stop-grace-period"
OWN_CGROUP = "io.pcompose.cgroup"
OWN_NAME = "io.pcompose.name"  # the container's name; its id is runc's (absent: the id is the name)
OWN_IMAGE_REF = "io.pcompose.image-ref"  # the image as the service names it
OWN_ANONYMOUS = "io.pcompose.anonymous"  # a volume made for a container, not named by the stack


def flag(value: bool) -> str:
    """docker compose's spelling of a boolean label (`oneoff`): True or False."""
    return "True" if value else "False"


def container(project: str, service: str, replica: int, oneoff: bool) -> dict[str, str]:
    """docker compose's labels of one container of a service."""
    return {PROJECT: project, SERVICE: service, CONTAINER_NUMBER: str(replica),
            ONEOFF: flag(oneoff)}
