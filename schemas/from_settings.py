"""The schema registry a process uses, from its settings: the Confluent-compatible HTTP registry when a URL is
set, else the bundled (or configured) schema files.

Credentials come from ``OMNISTREAM_SCHEMA_REGISTRY_USER`` / ``_PASSWORD``, or from the URL's user part, which
is stripped from the URL the client keeps: error messages and logs that name the registry never carry them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from pipeline.settings import Settings
    from schemas.registry import SchemaRegistry


def split_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """``https://u:p@host/x`` -> (``https://host/x``, (u, p)); a URL without a user part is returned as is."""
    parts = urlsplit(url)
    if parts.username is None:
        return url, None
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urlunsplit(parts._replace(netloc=netloc)), (parts.username, parts.password or "")


def registry_from(settings: Settings) -> SchemaRegistry:
    """The registry named by ``settings`` (see the module docstring)."""
    if not settings.schema_registry_url:
        from schemas.registry_file import FileSchemaRegistry

        return FileSchemaRegistry(settings.schema_dir)
    from schemas.registry_http import HttpSchemaRegistry

    url, auth = split_credentials(settings.schema_registry_url)
    if settings.schema_registry_user:
        password = settings.schema_registry_password
        auth = (settings.schema_registry_user, password.get_secret_value() if password else "")
    return HttpSchemaRegistry(url, auth=auth)
