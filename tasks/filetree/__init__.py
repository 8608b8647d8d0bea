"""Trees of files as task inputs: which files count (ignore rules) and whether any changed since the last run."""
