"""Analyses that make no model: how a setting was chosen, measured."""
