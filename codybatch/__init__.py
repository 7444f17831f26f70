"""Cody Batch: one AI-driven code change applied across several repositories."""

__version__ = "0.1.0"
