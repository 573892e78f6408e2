"""OCI runtime spec from a container description; runc + conmon lifecycle, exec, logs."""
