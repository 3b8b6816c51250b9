"""Stage 1 of the lab, the plan: what to run, decided before anything trains.

The config schema (:mod:`.schema`) and reading configs (:mod:`.loading`), the registries of
methods (:mod:`.methods`, with their training objectives in :mod:`.objectives`), models
(:mod:`.models`) and dataset inputs (:mod:`.inputs`), the grid with its run and experiment keys
(:mod:`.grid`), and the checks across keys (:mod:`.validate`). Imports nothing of the later stages.
"""
