"""csip: an open-source utility server for IEEE 2030.5 / CSIP and OpenADR 3."""

__version__ = "0.1.0.dev0"
