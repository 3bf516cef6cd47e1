"""posegen: background change, multi-format export and community pose requests for a pose app."""

__version__ = "0.1.0"
