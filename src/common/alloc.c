#include <stdatomic.h>
#include <stdlib.h>

#include "alloc.h"

static atomic_ulong alloc_count;
static atomic_long fault_at = -1; /* absolute allocation number that fails first, or -1 */
static atomic_int fault_repeat;

static int alloc_should_fail(void)
{
	unsigned long n = atomic_fetch_add(&alloc_count, 1);
	long at = atomic_load(&fault_at);

	if (at < 0 || n < (unsigned long)at)
		return 0;
	return n == (unsigned long)at || atomic_load(&fault_repeat);
}

void *teems_malloc(size_t size)
{
	return alloc_should_fail() ? NULL : malloc(size);
}

void *teems_calloc(size_t n, size_t size)
{
	return alloc_should_fail() ? NULL : calloc(n, size);
}

void *teems_realloc(void *p, size_t size)
{
	return alloc_should_fail() ? NULL : realloc(p, size);
}

void teems_free(void *p)
{
	free(p);
}

void teems_alloc_fault(long nth, int repeat)
{
	atomic_store(&fault_repeat, repeat);
	atomic_store(&fault_at, nth < 0 ? -1 : (long)atomic_load(&alloc_count) + nth);
}

unsigned long teems_alloc_count(void)
{
	return atomic_load(&alloc_count);
}
