"""Tools for an operator of a running stack: `./saga check`, `./saga dlq`, `./saga walkthrough`."""
