"""Failures of the hospital's systems and of their settings, in words a person can act on."""


class ConfigError(ValueError):
    """A bad option in config/pocprint.toml: the message names the section and option."""


class PeerError(Exception):
    """A hospital system did not answer, or refused: the message says which and why."""
