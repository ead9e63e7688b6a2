"""Processors that turn a run's events into something people read."""
