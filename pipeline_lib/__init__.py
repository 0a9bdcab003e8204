"""Shared, tested logic for the GPT-OSS coding-agent pipeline (phase scripts in scripts/ stay thin)."""

__version__ = "0.1.0"
