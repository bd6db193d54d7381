"""The console's pages, one module per page (docs/console.md says how to add one)."""
