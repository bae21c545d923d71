"""One reader per dictionary format (MUSE, the data directory's TSV, FreeDict dictd, CC-CEDICT, CLDR)."""
