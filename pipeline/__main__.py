"""``python -m pipeline`` runs the omnistream CLI."""

from pipeline.cli import main

main()
