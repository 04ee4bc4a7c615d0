"""Pure ingest domain: validation, normalisation, pseudonymisation and dedup of channel events (no IO)."""
