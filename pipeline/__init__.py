"""omnistream: a streaming omnichannel customer-event pipeline."""

__version__ = "0.1.0"
