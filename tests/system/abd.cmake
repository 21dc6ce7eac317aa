# engine = abd through the teems CLI and redis-cli --tls (abd_cluster.sh, label "system"):
# skipped (77) until teemsd is built or without redis-cli.
if(TARGET teems)
  add_test(NAME abd_cluster COMMAND ${CMAKE_CURRENT_SOURCE_DIR}/abd_cluster.sh
                                    $<TARGET_FILE:teems> ${CMAKE_BINARY_DIR}/teemsd)
  set_tests_properties(abd_cluster PROPERTIES LABELS system TIMEOUT 180 SKIP_RETURN_CODE 77)
endif()
