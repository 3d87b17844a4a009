"""Many relay nodes on one Redis (docs/multinode.md): who is alive, which node owns which
call, and what every node must hear. Nothing here runs unless ``RELAY_REDIS_URL`` is set.

Modelled on LiveKit's multi-node mode: a ``nodes`` hash refreshed every 2 s (a node is gone
after 5 s without an update), a call-to-node map set under a short lock when the first leg
joins, and pub/sub for staff actions, revocations and drains.
"""
