"""OCI runtime spec from a container description; runc + conmon lifecycle, exec, logs.

model (ContainerConfig, ImageConfig...) -> facts.gather (host and rootfs facts) -> spec.build
(config.json, pure) -> lifecycle (conmon + runc: create/start/stop/kill/pause/update/remove,
exit status) ; logs (k8s-file), exec (captured or a terminal), attach (a user's terminal or
pipes on conmon's attach socket), observe (what runs, from runc and annotations). layout says
where every file lives.
"""
