"""Stage 2 of the lab, training one run: the loop (:mod:`.loop`), one place per optimizer kind
(:mod:`.optimizers`), the run's data (:mod:`.data`), mid-run checkpoints (:mod:`.checkpoint`)
and the test-set measurements (:mod:`.evaluation`). Imports only the plan stage."""
