"""Engines: compute backends that turn a stored model into a runner."""
