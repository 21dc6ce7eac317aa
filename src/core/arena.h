/* Memory that one step's outputs point into, shared by the protocol cores (paxos, abd).
 *
 * A core's ready batch owns an arena: every buffer the outputs reference is allocated from it
 * (or handed to it), and all of them are released together when the next step clears the ready,
 * so the shell may read the outputs until then without copying. Allocation goes through the
 * teems_malloc hook. Not thread-safe; one arena per ready. */
#ifndef TEEMS_CORE_ARENA_H
#define TEEMS_CORE_ARENA_H

#include <stddef.h>

struct core_arena {
	void **ptrs;
	size_t n, cap;
};

/* Makes room for `need` elements of `elem` bytes in the growable array *arr of capacity *cap
 * (doubling). Errors: TEEMS_ENOMEM (the array is unchanged). */
int core_grow(void **arr, size_t *cap, size_t need, size_t elem);

/* Takes ownership of ptr (NULL is a no-op) until the next core_arena_clear. On TEEMS_ENOMEM
 * the arena does not own it and the caller must not free it while outputs may still point at
 * it (leaking is the safe choice). */
int core_arena_adopt(struct core_arena *a, void *ptr);

/* size bytes (at least one allocated), owned by the arena; NULL when out of memory. */
void *core_arena_alloc(struct core_arena *a, size_t size);

/* A copy of len bytes of p, owned by the arena; NULL when out of memory. */
void *core_arena_dup(struct core_arena *a, const void *p, size_t len);

/* Frees everything the arena owns; the arena stays usable. */
void core_arena_clear(struct core_arena *a);

/* Frees everything, including the arena's own table. */
void core_arena_free(struct core_arena *a);

#endif
