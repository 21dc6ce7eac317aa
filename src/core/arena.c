#include <string.h>

#include "common/alloc.h"
#include "core/arena.h"
#include "teems/err.h"

int core_grow(void **arr, size_t *cap, size_t need, size_t elem)
{
	size_t ncap;
	void *n;

	if (need <= *cap)
		return TEEMS_OK;
	ncap = *cap ? *cap * 2 : 16;
	while (ncap < need)
		ncap *= 2;
	n = teems_realloc(*arr, ncap * elem);
	if (!n)
		return TEEMS_ENOMEM;
	*arr = n;
	*cap = ncap;
	return TEEMS_OK;
}

int core_arena_adopt(struct core_arena *a, void *ptr)
{
	if (!ptr)
		return TEEMS_OK;
	if (core_grow((void **)&a->ptrs, &a->cap, a->n + 1, sizeof(void *)))
		return TEEMS_ENOMEM;
	a->ptrs[a->n++] = ptr;
	return TEEMS_OK;
}

void *core_arena_alloc(struct core_arena *a, size_t size)
{
	void *ptr = teems_malloc(size ? size : 1);

	if (!ptr)
		return NULL;
	if (core_arena_adopt(a, ptr)) {
		teems_free(ptr);
		return NULL;
	}
	return ptr;
}

void *core_arena_dup(struct core_arena *a, const void *p, size_t len)
{
	void *q = core_arena_alloc(a, len);

	if (q && len)
		memcpy(q, p, len);
	return q;
}

void core_arena_clear(struct core_arena *a)
{
	for (size_t i = 0; i < a->n; i++)
		teems_free(a->ptrs[i]);
	a->n = 0;
}

void core_arena_free(struct core_arena *a)
{
	core_arena_clear(a);
	teems_free(a->ptrs);
	memset(a, 0, sizeof(*a));
}
