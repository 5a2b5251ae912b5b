"""Annotation quality: agreement, per-annotator diagnostics and gold checks."""
