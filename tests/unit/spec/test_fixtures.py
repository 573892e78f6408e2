"""The shared Compose fixtures from real projects: valid ones load, invalid ones say where and what."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from reconciler import spec
from tests.support import shared

pytestmark = pytest.mark.shared

FIXTURES = shared.COMPOSE_FIXTURES
VALID = sorted(p.name for p in (FIXTURES / "valid").glob("*.yaml"))

# Variables the fixtures' notes name (or that a real user would have in .env).
ENV = {"TIMEZONE": "Europe/Paris", "VPN_SERVER_URL": "vpn.example.org", "PIHOLE_PW": "pw",
       "PIHOLE_ROUTER_IP": "192.0.2.1", "PIHOLE_NETWORK_DOMAIN": "lan",
       "PIHOLE_REVERSE_DNS": "192.0.2.0/24", "PIHOLE_HOST_IP": "192.0.2.2",
       "PIHOLE_HOST_IPV6": "2001:db8::2", "PLEX_MEDIA_PATH": "/srv/media", "HOME": "/root"}

# Files the netbox and full-example fixtures refer to but that were not copied with them.
SIBLINGS = {
    "netbox-docker__docker-compose.yaml": {
        "env/netbox.env": "DB_HOST=postgres\nSECRET_KEY='r8OwDznj!!dci#P9ghmRfdu1Ysxm0AiPeDCQhKE+N_rClfWNj'\n",
        "env/postgres.env": "POSTGRES_DB=netbox\nPOSTGRES_USER=netbox\n",
        "env/redis.env": "REDIS_PASSWORD=H733Kdjndks81\n",
        "env/redis-cache.env": "REDIS_PASSWORD=t4Ph722qJ5QHeQ1qfu36\n",
    },
    "compose-go__loader_full-example.yaml": {
        "example1.env": "FOO=foo_from_env_file\nBAZ=baz_from_env_file\n",
        "example1.label": "com.example.label1=from_file\n",
        "example2.label": "com.example.label2=from_file\n",
    },
}

# The fixture index calls it valid, but its bytes equal the cycle fixture in invalid/.
SAME_AS_CYCLE = "compose-go__loader_testdata_compose-depends-on-profile-no-cycle.yaml"


def _copy(name: str, tmp_path: Path) -> Path:
    dest = tmp_path / name
    shutil.copy(FIXTURES / "valid" / name, dest)
    for rel, text in SIBLINGS.get(name, {}).items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return dest


@pytest.mark.parametrize("name", [n for n in VALID if n not in (SAME_AS_CYCLE,
                                  "compose-go__schema_using-variables.yaml",
                                  "compose-go__loader_full-example.yaml")])
def test_valid_fixture_loads_with_every_service_normalized(name, tmp_path):
    project = spec.load([_copy(name, tmp_path)], environ=ENV)
    assert project.services_enabled
    for svc_name in project.services_enabled:
        svc = project.stack.services[svc_name]
        assert all(isinstance(p.target, int) for p in svc.ports)
        assert all(v.type in ("bind", "volume", "tmpfs") for v in svc.volumes)
        assert len(project.config_hash(svc_name)) == 64


def test_schema_fixture_with_variables_everywhere_loads_without_interpolation(tmp_path):
    project = spec.load([_copy("compose-go__schema_using-variables.yaml", tmp_path)],
                        environ={}, interpolate=False)
    assert project.document["services"]["foo"]["image"] == "${VARIABLE}"
    assert project.document["services"]["foo"]["deploy"]["replicas"] == "${VARIABLE}"


def test_full_example_parses_every_attribute(tmp_path):
    # The historic compose-go example names services (db, redis) it never defines and joins
    # networks alongside network_mode, so it loads only without the consistency checks.
    project = spec.load([_copy("compose-go__loader_full-example.yaml", tmp_path)],
                        environ={"HOME": "/home/u", "BAR": "bar"}, consistency=False)
    foo = project.stack.services["foo"]
    assert foo.environment["FOO"] == "foo_from_env_file"
    assert foo.environment["BAZ"] == "baz_from_service_def"
    assert "QUX" not in foo.environment
    assert foo.labels["com.example.label1"] == "from_file"
    assert foo.labels["com.example.number"] == "42"
    assert foo.command == ["bundle", "exec", "thin", "-p", "3000"]
    assert [(p.target, p.published) for p in foo.ports][:4] == [
        (3000, None), (3001, None), (3002, None), (3003, None)]
    assert (8080, "9090") in [(p.target, p.published) for p in foo.ports]
    assert foo.volumes[4].source == "/home/u/configs" and foo.volumes[4].read_only
    assert foo.volumes[3].source == str(tmp_path / "static")
    assert foo.ulimits["nproc"].soft == foo.ulimits["nproc"].hard == 65535
    assert foo.deploy.resources.limits.memory == 50 * 1024 * 1024
    assert foo.secrets[1].mode == 0o440
    assert foo.extensions == {"x-bar": "baz", "x-foo": "bar"}
    assert project.stack.networks["other-external-network"].name == "my-cool-network"
    assert project.stack.networks["some-network"].name == "full_example_project_name_some-network"
    assert project.stack.extensions["x-nested"] == {"bar": "baz", "foo": "bar"}
    assert foo.build.tags[2] == "full_example_project_name:1.0.0"
    with pytest.raises(spec.SpecError, match='depends on undefined service "db"'):
        spec.load([tmp_path / "compose-go__loader_full-example.yaml"], environ={"HOME": "/h"})


def test_profile_no_cycle_fixture_is_the_cycle_fixture(tmp_path):
    with pytest.raises(spec.SpecError, match="dependency cycle detected"):
        spec.load([_copy(SAME_AS_CYCLE, tmp_path)], environ={})


# file -> (line, path, words the message must contain)
INVALID = {
    "compose-go__loader_loader_test.go_L471_TestNonStringKeys.yaml":
        (1, "", "non-string key at top level: 123"),
    "compose-go__loader_loader_test.go_L518_TestNonMappingObject.yaml":
        (2, "services", "services must be a mapping"),
    "compose-go__loader_loader_test.go_L640_TestInvalidEnvironmentValue.yaml":
        (6, "services.dict-env.environment.FOO", "must be a boolean, null, number or string"),
    "compose-go__loader_loader_test.go_L1066_TestInvalidExternalAndDriverCombination.yaml":
        (3, "volumes.external_volume", 'conflicting parameters "external" and "driver"'),
    "compose-go__loader_loader_test.go_L1180_TestLoadBindMountSourceMustNotBeEmpty.yaml":
        (6, "services.tmpfs.volumes[0]", "field Source must not be empty"),
    "compose-go__loader_loader_test.go_L1802_TestServiceDeviceRequestCountAndDeviceIdsExclusive.yaml":
        (9, "services.hello-world.deploy.resources.reservations.devices[0]",
         '"count" and "device_ids" attributes are exclusive'),
    "compose-go__loader_loader_test.go_L2638_TestBadServiceConfig.yaml":
        (5, "services.redis.network_mode", "mutually exclusive `network_mode` and `networks`"),
    "compose-go__loader_testdata_compose-depends-on-cycle.yaml":
        (13, "services.service3.depends_on.service1",
         "dependency cycle detected: service1 -> service2 -> service3 -> service1"),
    "docker-compose__pkg_e2e_fixtures_wrong-composefile_compose.yaml":
        (4, "services.simple", "additional property 'wrongField' is not allowed"),
    "podman-compose__tests_integration_interpolation_docker-compose-colon-question-error.yaml":
        (7, "services.variables.environment.EXAMPLE_COLON_QUESTION_ERROR",
         "required variable NOT_A_VARIABLE is missing a value: Missing variable"),
    "podman-compose__tests_integration_parse-error_docker-compose-error.yaml":
        (3, "", "could not find expected ':'"),
    "podman-compose__tests_integration_secrets_docker-compose.yaml":
        (35, "services.test.secrets[6]", "additional property 'type' is not allowed"),
}


def test_every_invalid_fixture_is_listed():
    assert sorted(INVALID) == sorted(p.name for p in (FIXTURES / "invalid").glob("*.yaml"))


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_fixture_is_refused_with_place_and_meaning(name):
    line, path, words = INVALID[name]
    file = FIXTURES / "invalid" / name
    with pytest.raises(spec.SpecError) as info:
        spec.load([file], environ={})
    err = info.value
    assert err.file == str(file)
    assert err.line == line
    assert err.path == path
    assert words in err.message
    assert str(err).startswith(f"{file}:{line}:")


def test_required_variable_fixture_loads_once_the_variable_is_set():
    file = FIXTURES / "invalid" / \
        "podman-compose__tests_integration_interpolation_docker-compose-colon-question-error.yaml"
    project = spec.load([file], environ={"NOT_A_VARIABLE": "here"})
    assert project.stack.services["variables"].environment["EXAMPLE_COLON_QUESTION_ERROR"] == "here"


def test_fixture_details_a_user_would_check(tmp_path):
    reset = spec.load([_copy("compose-go__loader_testdata_extends_reset.yaml", tmp_path)], environ={})
    assert reset.stack.services["base"].command is None
    assert reset.stack.services["base"].image == "alpine:latest"
    ports = spec.load([_copy("podman-compose__tests_integration_ports_docker-compose.yaml", tmp_path)],
                      environ={}).stack.services["web2"].ports
    assert [(p.host_ip, p.published, p.target) for p in ports][:3] == [
        (None, "8002", 8002), ("127.0.0.1", "8003", 8003), ("127.0.0.1", "8004", 8004)]
    net = spec.load([_copy("docker-compose__pkg_e2e_fixtures_network-test_compose.yaml", tmp_path)],
                    environ={})
    assert net.stack.services["mydb"].network_mode == "service:db"
    assert net.stack.services["mydb"].depends_on["db"].restart
    assert net.stack.networks["servicenet"].name == "microservices"
    netbox = spec.load([_copy("netbox-docker__docker-compose.yaml", tmp_path)], environ={})
    worker = netbox.stack.services["netbox-worker"]
    assert worker.image.startswith("docker.io/netboxcommunity/netbox:v4.1")
    assert worker.environment["DB_HOST"] == "postgres"
    assert worker.depends_on["netbox"].condition == "service_healthy"
    assert netbox.stack.services["postgres"].healthcheck.test[1].startswith(
        "pg_isready -q -t 2 -d $POSTGRES_DB")
