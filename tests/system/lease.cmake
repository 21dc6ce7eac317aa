# Leases under a lying host clock (issue #6; docs/LEASES.md): a 3-replica cluster whose replicas
# run under libfaketime (Debian package faketime) one after the other have their host clock sped
# up, slowed down and jumped, the leader first, then a follower, while teems-loadgen records a
# history and two clients compete for one client lease. teems-check must accept the history,
# lease holders must never overlap (fencing tokens increasing), and the faked replicas must
# report clock taints. Skipped (77) without libfaketime or redis-cli.
if(TARGET teems-loadgen AND TARGET teems-check AND TARGET teemsd AND TARGET teems)
  add_test(NAME lease_faketime COMMAND ${CMAKE_CURRENT_LIST_DIR}/lease_faketime.sh
                                       ${CMAKE_BINARY_DIR})
  set_tests_properties(lease_faketime PROPERTIES LABELS system TIMEOUT 150 SKIP_RETURN_CODE 77)
endif()
