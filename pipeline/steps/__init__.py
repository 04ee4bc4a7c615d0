"""Processing steps: one per stage, IO-free apart from the codec; agents feed them batches."""
