/* One allocation hook for the whole code base, so that tests can fail the Nth allocation and
 * assert the error path (as SQLite's fault.c and cowsql's test/lib/fault.h do).
 *
 * Every allocation in src/ goes through teems_malloc/teems_calloc/teems_realloc/teems_free.
 * Not thread-safe to reconfigure while other threads allocate: tests set it up first. */
#ifndef TEEMS_ALLOC_H
#define TEEMS_ALLOC_H

#include <stddef.h>

void *teems_malloc(size_t size);
void *teems_calloc(size_t n, size_t size);
void *teems_realloc(void *p, size_t size);
void teems_free(void *p);

/* Test hook: allocation number `nth` (counting from 0 at the time of the call) and, if
 * `repeat`, every one after it, returns NULL. nth < 0 disables the fault. */
void teems_alloc_fault(long nth, int repeat);

/* How many allocations have been attempted since the process started (for sizing a sweep). */
unsigned long teems_alloc_count(void);

#endif
