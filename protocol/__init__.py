"""The shared leaf package: the data model and the packet envelope.

Every other package may import ``protocol``; ``protocol`` imports nothing of ours. That keeps
the dependency arrows (docs/architecture.md) one-way while giving the agent, the outbox, the
centre and provisioning one definition of a sample, a record and a packet.
"""
