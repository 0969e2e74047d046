"""One search run from space to summary: the plan read from a space, the checks before Ray starts, the run folder, running and resuming, the user's code, what is printed at the end."""
