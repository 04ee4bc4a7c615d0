"""Erasure of a person: keyed tokens, the suppression list, the link log's erasable form, and the erase command."""
