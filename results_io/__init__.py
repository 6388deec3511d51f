"""Writing clearing results: trade and order tables, summary and manifest, atomically."""
