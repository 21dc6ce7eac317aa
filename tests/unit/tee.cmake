# Unit tests of the platform layer (src/tee/): crypto wrappers, sealing and the sim fused secret,
# quotes, incarnation keys, the trusted clock.
teems_unit_test(test_tee_crypto test_tee_crypto.c LIBS teems_tee)
teems_unit_test(test_tee_seal test_tee_seal.c LIBS teems_tee)
teems_unit_test(test_tee_quote test_tee_quote.c LIBS teems_tee)
teems_unit_test(test_tee_incarnation test_tee_incarnation.c LIBS teems_tee)
teems_unit_test(test_tee_clock test_tee_clock.c LIBS teems_tee)
