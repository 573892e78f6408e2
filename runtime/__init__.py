"""The only code that touches the kernel or runs runc; takes frozen dataclasses, never a pydantic spec."""
