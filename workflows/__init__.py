"""Temporal workflows (journeys, tickets), their activities and the worker."""
