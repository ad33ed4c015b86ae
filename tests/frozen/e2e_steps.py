"""A module of the entry's own folder: the executable bundles it, and the code fingerprint covers it."""

STEPS = 4
"""Progress reports per job."""
