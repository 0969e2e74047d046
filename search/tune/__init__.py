"""Ray Tune's side of a search: the trainable, the searcher over the study, the schedulers (pruners), PBT, the progress view and the disk budget callback."""
