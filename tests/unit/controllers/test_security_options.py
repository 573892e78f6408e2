"""security_opt as the runtime takes it: seccomp and apparmor values in docker's two forms."""

from __future__ import annotations

import pytest

from controllers import service_config


@pytest.mark.parametrize("options, seccomp, apparmor", [
    ([], "", ""),
    (["no-new-privileges:true"], "", ""),
    (["seccomp=unconfined"], "unconfined", ""),
    (["seccomp:unconfined", "apparmor:unconfined"], "unconfined", "unconfined"),
    (["seccomp=/p/a.json", "seccomp=/p/b.json"], "/p/b.json", ""),  # the last wins, as in docker
    (["apparmor=my-profile", "label=disable"], "", "my-profile"),
])
def test_seccomp_and_apparmor_values(options, seccomp, apparmor):
    assert service_config.security_option(options, "seccomp") == seccomp
    assert service_config.security_option(options, "apparmor") == apparmor
