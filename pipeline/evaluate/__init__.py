"""Evaluations of streamed results against ground truth and batch recomputation."""
