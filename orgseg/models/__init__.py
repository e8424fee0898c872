"""Published model sets: the registry (data), the models folder (install, check)."""
