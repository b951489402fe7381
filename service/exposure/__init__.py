"""Exposure administration of the delivery service, by concern (see each module)."""
