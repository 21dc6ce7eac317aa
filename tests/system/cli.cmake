# The teems CLI as a user runs it (label "system"):
#   cli_redis    key-value commands, target selection, failover and exit codes against
#                redis-server (plaintext and TLS); skipped (77) without redis-server/openssl.
#   cli_cluster  cluster up/status/down and reads through every replica of a real teemsd
#                cluster; skipped (77) until teemsd is built.
if(TARGET teems)
  add_test(NAME cli_redis COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/cli_redis.sh $<TARGET_FILE:teems>)
  set_tests_properties(cli_redis PROPERTIES LABELS system TIMEOUT 60 SKIP_RETURN_CODE 77)
  add_test(NAME cli_cluster COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/cli_cluster.sh
                                    $<TARGET_FILE:teems> ${CMAKE_BINARY_DIR}/teemsd)
  set_tests_properties(cli_cluster PROPERTIES LABELS system TIMEOUT 120 SKIP_RETURN_CODE 77)
endif()
