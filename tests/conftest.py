"""Every process a test starts runs on generated data with the built-in development PII secret."""

from __future__ import annotations

import os

os.environ["OMNISTREAM_DEVELOPMENT"] = "1"
