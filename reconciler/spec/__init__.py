"""Compose files -> a validated, normalized Stack (pydantic); imports nothing else of pcompose.

The reconciler calls one function and catches one error:

    project = spec.load(["stack.yaml"], project_name=None, profiles=(), env_files=(),
                        project_directory=None, environ=None, interpolate=True,
                        consistency=True)
    project.name, project.working_dir, project.config_files, project.profiles
    project.stack               # model.Stack, long syntax only, every service of the files
    project.services_enabled    # the names the active profiles select, sorted
    project.services            # {name: model.Service} of those
    project.warnings            # [errors.Warning(message, place)]
    project.config_hash("web")  # sha256 hex of what recreates the container when it changes
    graph.start_order(project.stack, project.services_enabled)  # [["db"], ["api"], ["web"]]
    units.parse_duration("1m30s"), units.parse_bytes("1.5G")   # durations stay strings

    except spec.SpecError as err:   # err.file, err.line, err.column, err.path, err.message
        print(err)                  # stack.yaml:12:7: services.web.ports[0]: "80:80:80" is ...
"""

from reconciler.spec import errors, graph, model, project, units

SpecError = errors.SpecError
Warning = errors.Warning  # the loader's own record, shadowing the builtin category on purpose
Project = project.Project
Stack = model.Stack
load = project.load

__all__ = ["Project", "SpecError", "Stack", "Warning", "graph", "load", "model", "units"]
