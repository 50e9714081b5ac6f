"""Downstream evaluation: corpus preparation, fold protocols, linear probes, metrics and reports."""
