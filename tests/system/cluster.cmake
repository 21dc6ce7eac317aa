# teemsd system tests (real processes on loopback; label "system").
#
# teemsd-echo: teemsd's shell (the teemsd_shell object library) linked with a fake engine
# (fake_replica.c) that answers from memory, so the shell is tested on its own: pipelining and
# reply order, HELLO 3, protocol errors, oversized requests, many clients, garbage on the peer
# port, the fsync worker job, SIGTERM.
if(TARGET teemsd_shell)
  add_executable(teemsd-echo ${CMAKE_CURRENT_LIST_DIR}/fake_replica.c)
  target_link_libraries(teemsd-echo PRIVATE teemsd_shell teems_tee)
  if(TARGET teems_tls)
    target_link_libraries(teemsd-echo PRIVATE teems_tls)
    target_compile_definitions(teemsd-echo PRIVATE TEEMSD_ECHO_TLS)
  endif()

  add_executable(daemon_probe ${CMAKE_CURRENT_LIST_DIR}/daemon_probe.c)
  target_link_libraries(daemon_probe PRIVATE teems_common)

  add_test(NAME daemon_echo
           COMMAND ${CMAKE_CURRENT_LIST_DIR}/daemon_echo.sh $<TARGET_FILE:teemsd-echo>
                   $<TARGET_FILE:daemon_probe>)
  set_tests_properties(daemon_echo PROPERTIES LABELS system TIMEOUT 90 SKIP_RETURN_CODE 77)
endif()

# teemsd with the real engine: three replicas on loopback, kill -9 of the leader, restart;
# in plaintext (the development mode) and with TLS everywhere (attested peer channels, clients
# through the service CA that daemon_mkca makes as `teems cluster up` would).
if(TARGET teemsd)
  add_test(NAME daemon_smoke COMMAND ${CMAKE_CURRENT_LIST_DIR}/daemon_smoke.sh
                                     $<TARGET_FILE:teemsd> plain $<TARGET_FILE:daemon_probe>)
  set_tests_properties(daemon_smoke PROPERTIES LABELS system TIMEOUT 120 SKIP_RETURN_CODE 77)
  if(TARGET teems_tls)
    add_executable(daemon_mkca ${CMAKE_CURRENT_LIST_DIR}/daemon_mkca.c)
    target_link_libraries(daemon_mkca PRIVATE teems_tls teems_tee teems_common OpenSSL::Crypto)
    add_test(NAME daemon_smoke_tls
             COMMAND ${CMAKE_CURRENT_LIST_DIR}/daemon_smoke.sh $<TARGET_FILE:teemsd> tls
                     $<TARGET_FILE:daemon_mkca>)
    set_tests_properties(daemon_smoke_tls PROPERTIES LABELS system TIMEOUT 120
                                                     SKIP_RETURN_CODE 77)
  endif()
endif()
