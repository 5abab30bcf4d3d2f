"""Renderers: each module turns a Profile into one output format."""
