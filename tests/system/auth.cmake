# Users and permissions on a real cluster (label "system"): auth_cluster.sh drives a local
# 3-replica cluster with redis-cli --tls and the teems CLI: NOAUTH once default has a password,
# WRONGPASS, NOPERM for a command, a key and a per-key policy, and success, through leader and
# followers. Skipped (77) without redis-cli or until teemsd and teems are built.
if(TARGET teems)
  add_test(NAME auth_cluster COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/auth_cluster.sh
                                     $<TARGET_FILE:teems> ${CMAKE_BINARY_DIR}/teemsd)
  set_tests_properties(auth_cluster PROPERTIES LABELS system TIMEOUT 120 SKIP_RETURN_CODE 77)
endif()
