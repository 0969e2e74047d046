"""Ray itself: starting or joining it (connect), reaping its processes, GPUs, shipping the user's code to workers, and jobs sent to a cluster (submit)."""
