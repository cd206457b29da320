"""paper-digest: the day's new and trending papers that match your interests, by email and RSS/Atom."""

__version__ = "0.1.0"
