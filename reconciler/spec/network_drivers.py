"""Network drivers beyond bridge: what macvlan and ipvlan networks must say in `driver_opts`,
refused at load time with its place rather than when the agent makes the network."""

from __future__ import annotations

from reconciler.spec import errors, model

# docker's names; the runtime's underlay module knows the same ones
MODES = {"macvlan": ("bridge", "private", "vepa", "passthru"), "ipvlan": ("l2", "l3")}
UNDERLAY_DRIVERS = tuple(MODES)


def check(stack: model.Stack, place_of) -> None:
    """Raise SpecError for an underlay network without a parent link or with an unknown mode."""
    for key, net in stack.networks.items():
        if net.external or net.driver not in MODES:
            continue
        base = ("networks", key)
        opts = {k: str(v) for k, v in net.driver_opts.items()}
        if not opts.get("parent"):
            where = base + ("driver_opts",) if net.driver_opts else base + ("driver",)
            raise errors.SpecError(
                f'driver "{net.driver}" needs driver_opts.parent: the host link its '
                "containers' interfaces hang off (for example eth0)", place_of(where))
        option = f"{net.driver}_mode"
        mode = opts.get(option)
        if mode is not None and mode not in MODES[net.driver]:
            raise errors.SpecError(
                f'{option} "{mode}" is not one of {", ".join(MODES[net.driver])}',
                place_of(base + ("driver_opts", option)))
