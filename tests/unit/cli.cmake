# The blocking RESP client connection (src/client/conn.c) against redis-server on loopback
# (plaintext and TLS) and fake servers (refused, silent, garbage); skips the redis cases when
# redis-server or openssl is missing.
teems_unit_test(test_conn test_conn.c LIBS teems_conn Threads::Threads)
set_tests_properties(test_conn PROPERTIES TIMEOUT 60)
