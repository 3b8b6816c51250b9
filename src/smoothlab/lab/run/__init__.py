"""Stage 3 of the lab, running a grid: the runner (:mod:`.runner`), executors that train runs in
workers (:mod:`.executors`), the SQLite results store (:mod:`.store`), the lock on a results
folder (:mod:`.lock`) and live progress (:mod:`.progress`). Imports the plan and train stages."""
