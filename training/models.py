"""Policies and rounds: filled in by the on-policy loop issue."""
