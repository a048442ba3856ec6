"""Built-in plugins. Each module here is an ordinary pluggy plugin, like a third-party one."""
