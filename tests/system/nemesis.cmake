# Real-process fault tests (DESIGN.md section 11; docs/TESTING.md, "Real-process tests"), label
# "system": a local cluster made by `teems cluster up`, the history-recording load client
# teems-loadgen on several connections, a nemesis in nemesis.sh doing one scenario during the
# load, then teems-check on the history (with final reads of every key through every replica,
# so an acknowledged write that was lost is a linearizability violation).
#
#   nemesis_control        no fault; then the same history with one final read rewritten to an
#                          older value must make teems-check fail (negative control)
#   nemesis_kill           kill -9 of the leader, restart; kill -9 of a follower, restart
#   nemesis_kill_5         the same with 5 replicas, two followers at once
#   nemesis_rollback       a follower restarted on an earlier copy of its data directory
#   nemesis_fork           a second process of one replica from an earlier copy, while it runs
#   nemesis_pause          SIGSTOP/SIGCONT of the leader (beyond the election timeout), then of
#                          a follower
#   nemesis_total_crash    kill -9 of every replica, restart of all (recovery = auto)
#   nemesis_total_crash_operator  the same with recovery = operator: no leader, no write
#   nemesis_rollback_empty  a follower restarted on the data directory `cluster up` made (before
#                          its first start) while the other follower lags and the leader is
#                          paused: the genesis check (src/server/replica_genesis.c) must send it
#                          through registration and recovery instead of letting it rejoin as a
#                          fresh genesis member (which forgot acknowledged writes before the check
#                          existed).
if(TARGET teems_conn AND TARGET teems_lincheck AND TARGET teemsd AND TARGET teems)
  add_executable(teems-loadgen ${CMAKE_CURRENT_LIST_DIR}/loadgen.c)
  target_include_directories(teems-loadgen PRIVATE ${PROJECT_SOURCE_DIR}/tests/sim)
  target_link_libraries(teems-loadgen PRIVATE teems_conn teems_lincheck Threads::Threads)
  set_target_properties(teems-loadgen PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})

  foreach(scenario control kill kill_5 rollback rollback_empty fork pause total_crash
                   total_crash_operator)
    add_test(NAME nemesis_${scenario}
             COMMAND ${CMAKE_CURRENT_LIST_DIR}/nemesis.sh ${scenario} ${CMAKE_BINARY_DIR})
    set_tests_properties(nemesis_${scenario} PROPERTIES LABELS system TIMEOUT 120
                                                        SKIP_RETURN_CODE 77)
  endforeach()
endif()
