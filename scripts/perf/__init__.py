"""Tools that measure a stack: `./saga load`, `./saga bench`, `./saga profile`."""
