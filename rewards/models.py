"""Reward models (Bradley-Terry): filled in by the reward-model issue."""
