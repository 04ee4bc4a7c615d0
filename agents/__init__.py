"""Faust agents: one module per agent. Agents only move data; the logic lives in pipeline.domain."""
