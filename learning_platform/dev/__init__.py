"""Development only: `make dev`'s stack, the embedded Temporal dev server, demo data and pages."""
