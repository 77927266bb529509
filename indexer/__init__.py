"""Scanning photo folders and keeping the index in step with them."""
