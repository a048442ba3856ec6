"""Built-in pathway plugins."""
