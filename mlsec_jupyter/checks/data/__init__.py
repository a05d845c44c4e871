"""Data checks: integrity, duplicates and (later) poisoning detectors."""
