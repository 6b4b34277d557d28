"""Helpers shipped for testing code that uses logstream (like trio.testing)."""
