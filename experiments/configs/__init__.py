"""ml_collections configs; each get_config() docstring shows the command that runs it."""
