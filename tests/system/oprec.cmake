# Operator-authorized recovery (issue 5 item 4): cluster up, teems init, writes, kill -9 of
# every replica, restart; no leader and no write without the operator; another key and a stale
# authorization refused; `teems recover --authorize` brings epoch 1 with every write.
if(TARGET teemsd AND TARGET teems)
  add_test(NAME system_oprec COMMAND ${CMAKE_CURRENT_LIST_DIR}/oprec.sh ${CMAKE_BINARY_DIR})
  set_tests_properties(system_oprec PROPERTIES LABELS system TIMEOUT 240 SKIP_RETURN_CODE 77)
endif()
