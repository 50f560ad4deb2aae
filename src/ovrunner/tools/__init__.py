"""Tool calling and reasoning output: engine-neutral, shared by every front end."""
