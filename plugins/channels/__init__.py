"""Built-in channel plugins, one module each."""
