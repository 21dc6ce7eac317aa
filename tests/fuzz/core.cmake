teems_fuzz_target(fuzz_msg fuzz_msg.c LIBS teems_core)
