"""`image import --change`: Dockerfile instructions parsed and applied to an image config as docker does."""

import pytest

from runtime.images import changes

BASE = {"Env": ["PATH=/usr/bin:/bin"]}


def apply(*lines: str, config: dict | None = None) -> dict:
    return changes.apply(BASE if config is None else config, [changes.parse(line) for line in lines])


def test_cmd_and_entrypoint_take_the_json_and_the_shell_form():
    assert apply('CMD ["httpd", "-f"]')["Cmd"] == ["httpd", "-f"]
    assert apply("CMD httpd -f -p $PORT")["Cmd"] == ["/bin/sh", "-c", "httpd -f -p $PORT"]
    assert apply('ENTRYPOINT ["/bin/sh","-c"]')["Entrypoint"] == ["/bin/sh", "-c"]
    assert apply("entrypoint top -b")["Entrypoint"] == ["/bin/sh", "-c", "top -b"]
    assert apply("CMD []")["Cmd"] == []
    # not valid JSON: the shell form, as a Dockerfile reads it
    assert apply("CMD [echo, hi]")["Cmd"] == ["/bin/sh", "-c", "[echo, hi]"]


def test_a_later_entrypoint_drops_a_cmd_only_when_none_was_set_with_it():
    base = {"Cmd": ["old"]}
    assert "Cmd" not in apply('ENTRYPOINT ["/x"]', config=base)
    assert apply('CMD ["new"]', 'ENTRYPOINT ["/x"]', config=base)["Cmd"] == ["new"]
    assert apply('ENTRYPOINT ["/x"]', 'CMD ["new"]', config=base)["Cmd"] == ["new"]


def test_env_in_both_forms_with_quotes_and_expansion():
    assert apply("ENV A=1 B=2")["Env"] == ["PATH=/usr/bin:/bin", "A=1", "B=2"]
    assert apply("ENV GREETING hello big world")["Env"][-1] == "GREETING=hello big world"
    assert apply('ENV MSG="two words" OTHER=\'$NOT\' ESC=a\\ b')["Env"][1:] == \
        ["MSG=two words", "OTHER=$NOT", "ESC=a b"]
    # PATH is replaced in place; a variable is seen by later changes, not by its own line
    assert apply("ENV PATH=/opt/bin:$PATH")["Env"] == ["PATH=/opt/bin:/usr/bin:/bin"]
    assert apply("ENV A=1", "ENV A=2 B=$A")["Env"][1:] == ["A=2", "B=1"]
    assert apply("ENV A=x", 'ENV B=${A}y C=${UNSET:-dflt} D=${A:+set} E="${UNSET}"')["Env"][2:] == \
        ["B=xy", "C=dflt", "D=set", "E="]


def test_label_expose_volume_user_workdir_stopsignal():
    out = apply('LABEL org.example.name="my app" tier=web', "EXPOSE 80 53/udp 8000-8002/TCP",
                'VOLUME ["/data"]', "VOLUME /cache /logs", "USER app:app", "WORKDIR /srv", "WORKDIR www",
                "STOPSIGNAL SIGQUIT")
    assert out["Labels"] == {"org.example.name": "my app", "tier": "web"}
    assert sorted(out["ExposedPorts"]) == ["53/udp", "80/tcp", "8000/tcp", "8001/tcp", "8002/tcp"]
    assert sorted(out["Volumes"]) == ["/cache", "/data", "/logs"]
    assert out["User"] == "app:app" and out["WorkingDir"] == "/srv/www" and out["StopSignal"] == "SIGQUIT"
    assert apply("ENV D=/x", "WORKDIR $D/y")["WorkingDir"] == "/x/y"
    assert apply("STOPSIGNAL 9")["StopSignal"] == "9"


def test_the_base_config_is_left_as_it_was():
    base = {"Env": ["A=1"], "Labels": {"a": "b"}}
    apply("ENV A=2", "LABEL c=d", config=base)
    assert base == {"Env": ["A=1"], "Labels": {"a": "b"}}


@pytest.mark.parametrize("line, fault", [
    ("RUN rm -rf /", "RUN is not a valid change command"),
    ("ONBUILD RUN x", "ONBUILD is not a valid change command"),
    ("", "empty --change"),
    ("CMD", "CMD requires at least one argument"),
    ("ENV A", "needs a value"),
    ("ENV A=1 B", "can't find = in 'B'"),
    ('ENV A="open', 'unmatched "'),
    ("ENV A=${B", "missing '}'"),
    ("ENV A=${B/x/y}", "unsupported substitution"),
    ("EXPOSE http", "expected PORT"),
    ("EXPOSE 70000", "1 to 65535"),
    ("EXPOSE 90-80", "low to high"),
    ("EXPOSE 80/icmp", "expected PORT"),
    ("STOPSIGNAL SIGNOPE", "unknown signal"),
    ("USER $UNSET", "expands to nothing"),
])
def test_what_cannot_be_applied_is_refused_with_the_reason(line, fault):
    with pytest.raises(changes.ChangeError, match=fault):
        apply(line)
