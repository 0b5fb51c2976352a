"""The rule set a running service uses: the live set, the go-live gate and the last good copy on disk."""
