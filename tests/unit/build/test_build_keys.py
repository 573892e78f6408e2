"""Every `build:` key the loader takes is applied by the build or said not to be: a build secret's
uid, gid and mode (a RUN step's secret mount sets its own) get a warning at their place."""

from __future__ import annotations

from tests.unit.spec.helpers import load


def test_a_build_secrets_owner_and_mode_are_said_not_applied(tmp_path):
    (tmp_path / "token.txt").write_text("t")
    project = load(tmp_path, """
        services:
          app:
            build:
              context: .
              secrets:
                - source: token
                  target: tok
                  uid: "1000"
                  mode: 0400
                - plain
        secrets:
          token: {file: ./token.txt}
          plain: {file: ./token.txt}
        """)
    texts = [str(w) for w in project.warnings if "build.secrets" in str(w)]
    assert len(texts) == 2, texts
    assert "services.app.build.secrets[0].uid: parsed but not applied to a build" in texts[0]
    assert "services.app.build.secrets[0].mode: parsed but not applied to a build" in texts[1]
