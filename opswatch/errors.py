"""The OpsWatch exception hierarchy.

    OpsWatchError
     ├── ConfigError        a configuration file or value is invalid (names the file, key and fix)
     ├── ScrapeError        a target could not be scraped (connection, timeout, HTTP status)
     ├── ParseError         an exposition page is malformed (names the line)
     ├── StorageError       the time-series store failed
     └── NotFittedError     a detector was asked to score before it had a baseline

Third-party errors are translated into these at the package boundary, with ``raise ... from``.
"""


class OpsWatchError(Exception):
    """Base class of every error OpsWatch raises on purpose."""


class ConfigError(OpsWatchError, ValueError):
    """A configuration value is invalid; the message names the file, the key and the fix."""


class ScrapeError(OpsWatchError):
    """A target could not be scraped: connection refused, timeout, or a non-2xx HTTP status."""


class ScrapeLimitError(ScrapeError):
    """A scrape went over its job's ``sample_limit`` or ``body_size_limit``; ``reason`` names which."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


class ParseError(OpsWatchError, ValueError):
    """An exposition page could not be parsed; the message quotes the offending line."""


class StorageError(OpsWatchError):
    """The time-series store could not read or write."""


class NotFittedError(OpsWatchError, RuntimeError):
    """A detector was asked to score before it has seen enough points to form a baseline."""
