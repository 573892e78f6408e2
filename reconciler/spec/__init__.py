"""Compose files -> a validated, normalized Stack (pydantic); imports nothing else of pcompose.

The reconciler calls one function and catches one error:

    project = spec.load(["stack.yaml"], project_name=None, profiles=(), env_files=(),
                        project_directory=None, environ=None, interpolate=True)
    project.name, project.working_dir, project.config_files
    project.stack               # model.Stack, long syntax only (every service)
    project.services_enabled    # names the active profiles select, sorted
    project.warnings            # [errors.Warning(message, place)]
    project.config_hash("web")  # sha256 hex, stable across runs

    except spec.SpecError as err:   # err.file, err.line, err.column, err.path, err.message
        print(err)                  # stack.yaml:12:7: services.web.ports[0]: "80:80:80" is ...
"""

from reconciler.spec import errors, model, project

SpecError = errors.SpecError
Warning = errors.Warning  # noqa: A001
Project = project.Project
Stack = model.Stack
load = project.load

__all__ = ["SpecError", "Warning", "Project", "Stack", "load", "model"]
