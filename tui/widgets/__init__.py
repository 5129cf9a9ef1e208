"""Reusable widgets: the series plot, probability bars, the config form."""
