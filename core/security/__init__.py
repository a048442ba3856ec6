"""Security and privacy: encryption at rest, webhook signatures, authentication, audit."""
