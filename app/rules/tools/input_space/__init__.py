"""The finite input space of one or more rule sets: the requests lint and diff have decide() judge."""
