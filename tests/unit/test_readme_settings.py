"""The README's configuration table names every setting, and only settings that exist."""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_documents_exactly_the_settings() -> None:
    documented = set(re.findall(r"OMNISTREAM_([A-Z0-9_]+)", README.read_text(encoding="utf-8")))
    fields = {name.upper() for name in Settings.model_fields}
    assert sorted(documented - fields) == [], "README names settings that do not exist"
    assert sorted(fields - documented) == [], "settings missing from the README configuration table"
