# The TLS engine (src/net/tls*.c): RA-TLS peer channels, the sealed service CA, service and client
# contexts over memory BIOs (test_tls), and real OpenSSL clients (openssl s_client, redis-cli)
# against a loopback listener (test_tls_socket; skips a client program that is not installed).
if(TARGET teems_tls)
  teems_unit_test(test_tls ${CMAKE_CURRENT_LIST_DIR}/test_tls.c LIBS teems_tls)
  teems_unit_test(test_tls_socket ${CMAKE_CURRENT_LIST_DIR}/test_tls_socket.c LIBS teems_tls)
  set_tests_properties(test_tls test_tls_socket PROPERTIES TIMEOUT 60)
endif()
