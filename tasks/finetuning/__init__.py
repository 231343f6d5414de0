"""Downstream tasks: GLUE (heads and text-to-text) and summarization/translation."""
