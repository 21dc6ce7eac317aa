# Leases from the trusted clock (DESIGN.md section 8; docs/LEASES.md), part of teems_core, and
# the Paxos core's leader lease (paxos_lease.c).
target_sources(teems_core PRIVATE lease.c)
target_sources(teems_core PRIVATE paxos_lease.c)

# Client leases as state-machine commands (src/kv/lease_table.c: LEASE.* parsing, log encoding,
# apply, replies, snapshot bytes). Its own library until kv_apply dispatches to it; then it
# moves into teems_kv (src/kv/CMakeLists.txt).
add_library(teems_kv_lease STATIC ${CMAKE_CURRENT_SOURCE_DIR}/../kv/lease_table.c)
target_link_libraries(teems_kv_lease PUBLIC teems_core teems_common)
