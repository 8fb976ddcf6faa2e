"""The `tfp-nice` command line (the top layer: thin over models, export and data)."""

from tfp_nice.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
