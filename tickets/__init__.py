"""The ticket domain: SLA policies and calendars, routing, triage, the department service."""
