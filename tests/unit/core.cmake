teems_unit_test(test_quorum test_quorum.c LIBS teems_core)
teems_unit_test(test_msg test_msg.c LIBS teems_core)
teems_unit_test(test_paxos test_paxos.c LIBS teems_core)
teems_unit_test(test_paxos_rr test_paxos_rr.c LIBS teems_core)
