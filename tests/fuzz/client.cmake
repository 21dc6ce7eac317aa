# Fuzz targets of the object layer (src/client/): store URLs, S3 listings and multipart
# answers, and blobs fed to the decryptor (including blobs whose header authenticates, so the
# chunk parser is reached).
teems_fuzz_target(fuzz_blob_url fuzz_blob_url.c LIBS teems_client)
teems_fuzz_target(fuzz_s3_list fuzz_s3_list.c LIBS teems_client)
teems_fuzz_target(fuzz_obj_blob fuzz_obj_blob.c LIBS teems_client)
teems_fuzz_target(fuzz_obj_meta fuzz_obj_meta.c LIBS teems_client)
teems_fuzz_target(fuzz_s3_mp fuzz_s3_mp.c LIBS teems_client)
