# Leases from the trusted clock (DESIGN.md section 8; docs/LEASES.md), part of teems_core.
target_sources(teems_core PRIVATE lease.c)
