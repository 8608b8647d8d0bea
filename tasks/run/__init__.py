"""One doit run of this project: the run lock and crash points, the crash-safe state file,
the reporter, progress lines, `doit graph`."""
