# bench-delay-proxy: TCP forwarding with a fixed delay, so bench/compare.sh can put a network
# round trip between replicas (--peer-rtt); this kernel has no netem.
add_executable(bench-delay-proxy ${CMAKE_CURRENT_LIST_DIR}/delay_proxy.c)
set_target_properties(bench-delay-proxy PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR})
