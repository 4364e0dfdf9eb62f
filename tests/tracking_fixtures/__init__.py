"""Shared fixtures for the tracking tests: a synthetic adult skeleton and landmark synthesis."""
