"""`ioda encoder-card` (see ioda.encoders.cli.card_main)."""

from ioda.encoders.cli import card_main as main

__all__ = ["main"]
