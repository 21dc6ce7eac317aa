# Fuzz targets of the platform layer (src/tee/).
teems_fuzz_target(fuzz_quote fuzz_quote.c LIBS teems_tee)
