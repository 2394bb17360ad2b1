"""Generic CSV transformations: drop, merge, rename, split, anonymize and pivot columns."""
