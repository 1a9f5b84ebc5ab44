"""Data-aware diagnostics: how far cells (language x domain) are apart in their data (:mod:`.shift`,
:mod:`.typology`), which pathways the controllers choose on them (:mod:`.pathways`), and whether the two
are related (:mod:`.relations`: Mantel and partial Mantel tests, Spearman with bootstrap intervals)."""
