# Leases from the trusted clock (DESIGN.md section 8; docs/LEASES.md), part of teems_core, and
# the Paxos core's leader lease (paxos_lease.c).
target_sources(teems_core PRIVATE lease.c)
target_sources(teems_core PRIVATE paxos_lease.c)

# Client leases as state-machine commands live in src/kv/lease_table.c, part of teems_kv.
