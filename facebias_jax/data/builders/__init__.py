"""TFDS builders, one sub-package per dataset."""
