"""What is built on the protocol and the stores: reconcile (verify, repair), review (reject),
search (every hit re-checked in the record), refusals and freshness (what the record says about
each catalog's last read)."""
