"""Looking after a store: verify, repair, recover, upgrade."""
