"""The keys of a trial's Tune results that the search reads back (the searcher, tracking, the
live view); a module of constants only, so that the processes that train (a trial, its seeds'
actors) import no more of Ray Tune than they use."""
FINISHED_KEY = "trial_finished"   # set in a trial's last result when it ended by itself
FAIL_KEY = "fail_reason"          # set in a trial's last result when it failed
FINAL_PREFIX = "final_"           # final_<metric>: the objective at the selected epoch
NODE_KEY = "node_id"               # in every result: the Ray node the trial ran on
OOM_KEY = "out_of_memory"         # in a trial's last result when it ran out of memory
HELD_KEY = "held_epochs"          # in a result: the epochs since the previous one (trainable.py)
MISTAKE_KEY = "code_mistake"      # with FAIL_KEY: the training code broke report()'s contract
