"""The terminal output of `posegen up` (one console, shared by its modules)."""

from __future__ import annotations

from rich.console import Console

# soft_wrap: paths, tokens and commands stay on one line, in a terminal or a pipe.
console = Console(soft_wrap=True)
