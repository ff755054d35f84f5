from av import __getattr__  # noqa: F401  (stand-in: every name is _Missing)
