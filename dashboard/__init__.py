"""The dashboard: a read model of the `saga.audit` stream, in a database of its own, served as
live pages of every saga's timeline, the stuck ones and the dead letters."""
