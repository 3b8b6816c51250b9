"""Stage 4 of the lab, reporting stored runs: summaries over seeds and the terminal table
(:mod:`.summary`), the display order (:mod:`.order`), figures (:mod:`.plots`) and the report
folder with its HTML page (:mod:`.html`). Reads the store; never trains."""
