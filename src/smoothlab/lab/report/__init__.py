"""Stage 4 of the lab, reporting stored runs: summaries over seeds and the terminal table
(:mod:`.summary`), the display order (:mod:`.order`), figures (:mod:`.plots`, the reliability
grid in :mod:`.reliability`, what they share in :mod:`.drawing`), the page's tables
(:mod:`.tables`) and the report folder with its HTML page (:mod:`.html`). Reads the store;
never trains."""
