"""The versioned JSON profile (schema in docs/json-schema.md)."""

from __future__ import annotations

from profila.model import Profile


def render(profile: Profile) -> str:
    return profile.to_json()
