"""The revisions, oldest first: `0001` creates the schema from empty."""
