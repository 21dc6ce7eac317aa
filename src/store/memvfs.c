/* memvfs: see memvfs.h for the model.
 *
 * Memory discipline: every operation allocates everything it needs before it changes any state,
 * so an allocation failure (teems_alloc_fault) leaves the file system as it was and returns
 * TEEMS_ENOMEM; the WAL's fault-injection tests rely on that. The one exception is the history
 * of versions: when recording a version fails, the sync still happened and that version is
 * marked unusable for memvfs_rollback(). */
#include <string.h>

#include "common/alloc.h"
#include "memvfs.h"
#include "teems/err.h"

#define MV_SECTOR 512

/* Immutable, shared synced contents of one file (copy-on-write between versions). */
struct mv_blob {
	size_t refs;
	size_t len;
	uint8_t data[];
};

/* One unsynced write or truncation of a file. */
struct mv_pend {
	uint64_t off; /* write offset, or the new size of a truncation */
	size_t len;
	uint8_t *data; /* NULL for a truncation */
};

struct mv_inode {
	size_t refs; /* names (current and durable), pending name ops, open handles */
	uint8_t *data;
	size_t len, cap;
	struct mv_blob *synced; /* NULL: empty */
	struct mv_pend *pend;
	size_t npend, cappend;
};

struct mv_entry {
	char *name;
	struct mv_inode *ino;
};

struct mv_names {
	struct mv_entry *v;
	size_t n, cap;
};

/* One unsynced name operation, applied atomically: remove rm (if any), then bind set to ino. */
struct mv_dirop {
	char *rm;
	char *set;
	struct mv_inode *ino;
};

struct mv_dir {
	char *path;
	struct mv_names cur, dur;
	struct mv_dirop *ops;
	size_t nops, capops;
};

struct mv_vent {
	char *name;
	size_t ino; /* index into the version's blobs */
};

struct mv_vdir {
	size_t dir; /* index into memvfs.dirs (directories are never removed) */
	struct mv_vent *v;
	size_t n;
};

struct mv_version {
	int valid;
	struct mv_blob **blobs; /* per inode; NULL entries are empty files */
	size_t nblobs;
	struct mv_vdir *dirs;
	size_t ndirs;
};

struct mv_file {
	struct store_file base;
	struct memvfs *m;
	struct mv_inode *ino;
	int writable;
	int dead;
	struct mv_file *prev, *next;
};

struct memvfs {
	struct store_vfs vfs;
	uint64_t rng;
	int keep_history;
	struct mv_dir *dirs;
	size_t ndirs, capdirs;
	struct mv_version *versions; /* versions[i] is version i when keep_history */
	size_t capversions;
	uint64_t version;
	uint64_t nsyncs;
	memvfs_sync_hook hook;
	void *hook_arg;
	uint64_t crash_nth;
	int crash_action;
	enum memvfs_crash_mode crash_mode;
	uint64_t fail_write_in; /* writes to go before an injected failure; UINT64_MAX: none */
	struct mv_file *files;
};

static struct memvfs *mv_of(struct store_vfs *vfs)
{
	return (struct memvfs *)vfs;
}

/* splitmix64: small, seedable, good enough for choosing what a crash keeps. */
static uint64_t mv_rand(struct memvfs *m)
{
	uint64_t z = (m->rng += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static char *mv_strdup(const char *s)
{
	size_t len = strlen(s);
	char *d = teems_malloc(len + 1);

	if (d != NULL)
		memcpy(d, s, len + 1);
	return d;
}

/* Grows *v (n elements of size sz, capacity *cap) to hold at least want elements. */
static int mv_reserve(void **v, size_t *cap, size_t want, size_t sz)
{
	size_t ncap;
	void *p;

	if (want <= *cap)
		return TEEMS_OK;
	ncap = *cap ? *cap : 4;
	while (ncap < want)
		ncap *= 2;
	p = teems_realloc(*v, ncap * sz);
	if (p == NULL)
		return TEEMS_ENOMEM;
	*v = p;
	*cap = ncap;
	return TEEMS_OK;
}

/* Blobs and inodes. */

static struct mv_blob *blob_new(const uint8_t *data, size_t len)
{
	struct mv_blob *b = teems_malloc(sizeof(*b) + len);

	if (b == NULL)
		return NULL;
	b->refs = 1;
	b->len = len;
	if (len > 0)
		memcpy(b->data, data, len);
	return b;
}

static struct mv_blob *blob_ref(struct mv_blob *b)
{
	if (b != NULL)
		b->refs++;
	return b;
}

static void blob_unref(struct mv_blob *b)
{
	if (b != NULL && --b->refs == 0)
		teems_free(b);
}

static void pend_clear(struct mv_inode *ino)
{
	for (size_t i = 0; i < ino->npend; i++)
		teems_free(ino->pend[i].data);
	ino->npend = 0;
}

static struct mv_inode *ino_new(void)
{
	return teems_calloc(1, sizeof(struct mv_inode));
}

static struct mv_inode *ino_ref(struct mv_inode *ino)
{
	ino->refs++;
	return ino;
}

static void ino_unref(struct mv_inode *ino)
{
	if (ino == NULL || --ino->refs > 0)
		return;
	pend_clear(ino);
	teems_free(ino->pend);
	blob_unref(ino->synced);
	teems_free(ino->data);
	teems_free(ino);
}

/* Makes room for len bytes of content (zero-filled beyond the current length). */
static int ino_grow(struct mv_inode *ino, size_t len)
{
	if (len > ino->cap) {
		size_t ncap = ino->cap ? ino->cap : 256;
		uint8_t *p;

		while (ncap < len)
			ncap *= 2;
		p = teems_realloc(ino->data, ncap);
		if (p == NULL)
			return TEEMS_ENOMEM;
		ino->data = p;
		ino->cap = ncap;
	}
	return TEEMS_OK;
}

/* Name tables. */

static long names_find(const struct mv_names *t, const char *name)
{
	for (size_t i = 0; i < t->n; i++)
		if (strcmp(t->v[i].name, name) == 0)
			return (long)i;
	return -1;
}

static void names_remove(struct mv_names *t, const char *name)
{
	long i = names_find(t, name);

	if (i < 0)
		return;
	teems_free(t->v[i].name);
	ino_unref(t->v[i].ino);
	t->v[i] = t->v[--t->n];
}

/* Binding a name is split in two so that callers can allocate everything first:
 * names_prepare() finds the slot (*slot >= 0) or makes room for a new one and copies the name
 * (*copy); names_commit() cannot fail. */
static int names_prepare(struct mv_names *t, const char *name, long *slot, char **copy)
{
	*copy = NULL;
	*slot = names_find(t, name);
	if (*slot >= 0)
		return TEEMS_OK;
	if (mv_reserve((void **)&t->v, &t->cap, t->n + 1, sizeof(*t->v)) != TEEMS_OK)
		return TEEMS_ENOMEM;
	*copy = mv_strdup(name);
	return *copy == NULL ? TEEMS_ENOMEM : TEEMS_OK;
}

static void names_commit(struct mv_names *t, long slot, char *copy, struct mv_inode *ino)
{
	if (slot >= 0) {
		ino_ref(ino);
		ino_unref(t->v[slot].ino);
		t->v[slot].ino = ino;
		return;
	}
	t->v[t->n++] = (struct mv_entry){.name = copy, .ino = ino_ref(ino)};
}

/* Binds name to ino (replacing any binding). */
static int names_set(struct mv_names *t, const char *name, struct mv_inode *ino)
{
	long slot;
	char *copy;

	if (names_prepare(t, name, &slot, &copy) != TEEMS_OK)
		return TEEMS_ENOMEM;
	names_commit(t, slot, copy, ino);
	return TEEMS_OK;
}

static void names_free(struct mv_names *t)
{
	for (size_t i = 0; i < t->n; i++) {
		teems_free(t->v[i].name);
		ino_unref(t->v[i].ino);
	}
	teems_free(t->v);
	*t = (struct mv_names){0};
}

static int names_copy(struct mv_names *dst, const struct mv_names *src)
{
	struct mv_names t = {0};

	for (size_t i = 0; i < src->n; i++) {
		if (names_set(&t, src->v[i].name, src->v[i].ino) != TEEMS_OK) {
			names_free(&t);
			return TEEMS_ENOMEM;
		}
	}
	*dst = t;
	return TEEMS_OK;
}

static int names_apply(struct mv_names *t, const struct mv_dirop *op)
{
	if (op->set != NULL && names_set(t, op->set, op->ino) != TEEMS_OK)
		return TEEMS_ENOMEM;
	if (op->rm != NULL && (op->set == NULL || strcmp(op->rm, op->set) != 0))
		names_remove(t, op->rm);
	return TEEMS_OK;
}

static void dirop_free(struct mv_dirop *op)
{
	teems_free(op->rm);
	teems_free(op->set);
	if (op->ino != NULL)
		ino_unref(op->ino);
}

static void dir_clear_ops(struct mv_dir *d)
{
	for (size_t i = 0; i < d->nops; i++)
		dirop_free(&d->ops[i]);
	d->nops = 0;
}

/* Records an unsynced name operation (rm and set may be NULL) and applies it to the current
 * names. Everything is allocated before anything changes. */
static int dir_op(struct mv_dir *d, const char *rm, const char *set, struct mv_inode *ino)
{
	struct mv_dirop op = {0};
	char *name = NULL;
	long slot = -1;

	if (mv_reserve((void **)&d->ops, &d->capops, d->nops + 1, sizeof(*d->ops)) != TEEMS_OK)
		goto oom;
	if (rm != NULL && (op.rm = mv_strdup(rm)) == NULL)
		goto oom;
	if (set != NULL && ((op.set = mv_strdup(set)) == NULL ||
			    names_prepare(&d->cur, set, &slot, &name) != TEEMS_OK))
		goto oom;
	if (set != NULL) {
		op.ino = ino_ref(ino);
		names_commit(&d->cur, slot, name, ino);
	}
	if (rm != NULL && (set == NULL || strcmp(rm, set) != 0))
		names_remove(&d->cur, rm);
	d->ops[d->nops++] = op;
	return TEEMS_OK;
oom:
	teems_free(op.rm);
	teems_free(op.set);
	teems_free(name);
	return TEEMS_ENOMEM;
}

/* Paths. */

static struct mv_dir *dir_find(struct memvfs *m, const char *path, size_t len)
{
	for (size_t i = 0; i < m->ndirs; i++)
		if (strlen(m->dirs[i].path) == len && memcmp(m->dirs[i].path, path, len) == 0)
			return &m->dirs[i];
	return NULL;
}

/* Splits "dir/name" (or "name", whose directory is "."). */
static struct mv_dir *path_split(struct memvfs *m, const char *path, const char **name)
{
	const char *slash = strrchr(path, '/');

	if (slash == NULL) {
		*name = path;
		return dir_find(m, ".", 1);
	}
	*name = slash + 1;
	return dir_find(m, path, (size_t)(slash - path));
}

/* Versions. */

static void version_free(struct mv_version *v)
{
	for (size_t i = 0; i < v->nblobs; i++)
		blob_unref(v->blobs[i]);
	teems_free(v->blobs);
	for (size_t i = 0; i < v->ndirs; i++) {
		for (size_t j = 0; j < v->dirs[i].n; j++)
			teems_free(v->dirs[i].v[j].name);
		teems_free(v->dirs[i].v);
	}
	teems_free(v->dirs);
	*v = (struct mv_version){0};
}

/* Captures the durable state: durable names and the synced bytes of their inodes. */
static int version_capture(struct memvfs *m, struct mv_version *out)
{
	struct mv_version v = {.valid = 1};
	struct mv_inode **inos = NULL;
	size_t ninos = 0, total = 0;

	for (size_t i = 0; i < m->ndirs; i++)
		total += m->dirs[i].dur.n;
	if (total > 0) {
		inos = teems_malloc(total * sizeof(*inos));
		v.blobs = teems_malloc(total * sizeof(*v.blobs));
		if (inos == NULL || v.blobs == NULL)
			goto oom;
	}
	v.dirs = teems_calloc(m->ndirs ? m->ndirs : 1, sizeof(*v.dirs));
	if (v.dirs == NULL)
		goto oom;
	for (size_t i = 0; i < m->ndirs; i++) {
		struct mv_names *t = &m->dirs[i].dur;
		struct mv_vdir *vd = &v.dirs[v.ndirs++];

		vd->dir = i;
		if (t->n == 0)
			continue;
		vd->v = teems_calloc(t->n, sizeof(*vd->v));
		if (vd->v == NULL)
			goto oom;
		for (size_t j = 0; j < t->n; j++) {
			size_t k;

			for (k = 0; k < ninos && inos[k] != t->v[j].ino; k++)
				;
			if (k == ninos) {
				inos[ninos++] = t->v[j].ino;
				v.blobs[v.nblobs++] = blob_ref(t->v[j].ino->synced);
			}
			vd->v[j].ino = k;
			vd->v[j].name = mv_strdup(t->v[j].name);
			if (vd->v[j].name == NULL)
				goto oom;
			vd->n++;
		}
	}
	teems_free(inos);
	*out = v;
	return TEEMS_OK;
oom:
	teems_free(inos);
	version_free(&v);
	return TEEMS_ENOMEM;
}

/* Records a new version after a durable change. */
static void version_push(struct memvfs *m)
{
	struct mv_version v = {0};

	m->version++;
	if (!m->keep_history)
		return;
	if (mv_reserve((void **)&m->versions, &m->capversions, m->version + 1,
		       sizeof(*m->versions)) != TEEMS_OK) {
		/* Cannot even remember it: this version counts as the previous one. */
		m->version--;
		return;
	}
	if (version_capture(m, &v) != TEEMS_OK)
		v.valid = 0;
	m->versions[m->version] = v;
}

/* Power loss. */

static void kill_handles(struct memvfs *m)
{
	for (struct mv_file *f = m->files; f != NULL; f = f->next)
		f->dead = 1;
}

struct crash_ino {
	struct mv_inode *ino;
	uint8_t *data;
	size_t len, cap;
	struct mv_blob *blob;
};

static int buf_put(struct crash_ino *c, uint64_t off, const uint8_t *src, size_t len, int how,
		   struct memvfs *m)
{
	size_t end = (size_t)off + len;

	if (end > c->cap) {
		size_t ncap = c->cap ? c->cap : 256;
		uint8_t *p;

		while (ncap < end)
			ncap *= 2;
		p = teems_realloc(c->data, ncap);
		if (p == NULL)
			return TEEMS_ENOMEM;
		c->data = p;
		c->cap = ncap;
	}
	if (off > c->len)
		memset(c->data + c->len, 0, (size_t)off - c->len);
	if (how == 0) {
		memcpy(c->data + off, src, len);
	} else if (how == 1) {
		memset(c->data + off, 0, len);
	} else {
		for (size_t i = 0; i < len; i++)
			c->data[off + i] = (uint8_t)mv_rand(m);
	}
	if (end > c->len)
		c->len = end;
	return TEEMS_OK;
}

/* What the disk holds for ino after a power loss: its synced bytes plus the unsynced writes the
 * mode keeps. */
static int crash_content(struct memvfs *m, struct crash_ino *c, enum memvfs_crash_mode mode)
{
	struct mv_inode *ino = c->ino;

	if (ino->synced != NULL && buf_put(c, 0, ino->synced->data, ino->synced->len, 0, m) != 0)
		return TEEMS_ENOMEM;
	for (size_t i = 0; i < ino->npend; i++) {
		struct mv_pend *p = &ino->pend[i];

		if (p->data == NULL) {
			if (mode == MEMVFS_RANDOM && (mv_rand(m) & 1))
				continue;
			if (mode == MEMVFS_DROP)
				continue;
			if (p->off < c->len) {
				c->len = (size_t)p->off;
			} else if (p->off > c->len &&
				   buf_put(c, p->off, NULL, 0, 1, m) != TEEMS_OK) {
				return TEEMS_ENOMEM;
			}
			continue;
		}
		if (mode == MEMVFS_DROP)
			continue;
		if (mode == MEMVFS_KEEP || mode == MEMVFS_GARBLE) {
			if (buf_put(c, p->off, p->data, p->len, mode == MEMVFS_KEEP ? 0 : 2, m) !=
			    0)
				return TEEMS_ENOMEM;
			continue;
		}
		/* MEMVFS_RANDOM: sector by sector, as a disk tears a write. */
		for (size_t done = 0; done < p->len;) {
			uint64_t at = p->off + done;
			size_t n = MV_SECTOR - (size_t)(at % MV_SECTOR);
			uint64_t r = mv_rand(m) % 10;

			if (n > p->len - done)
				n = p->len - done;
			if (r >= 4) {
				int how = r >= 8 ? 2 : r == 7 ? 1 : 0;

				if (buf_put(c, at, p->data + done, n, how, m) != TEEMS_OK)
					return TEEMS_ENOMEM;
			}
			done += n;
		}
	}
	c->blob = blob_new(c->data, c->len);
	return c->blob == NULL ? TEEMS_ENOMEM : TEEMS_OK;
}

static int mv_power_loss(struct memvfs *m, enum memvfs_crash_mode mode)
{
	struct mv_names *cur = NULL, *dur = NULL;
	struct crash_ino *cs = NULL;
	size_t ncs = 0, total = 0;
	int rv = TEEMS_ENOMEM;

	cur = teems_calloc(m->ndirs + 1, sizeof(*cur));
	dur = teems_calloc(m->ndirs + 1, sizeof(*dur));
	if (cur == NULL || dur == NULL)
		goto out;
	/* Phase 1: compute the new names and contents without touching the live state. */
	for (size_t i = 0; i < m->ndirs; i++) {
		struct mv_dir *d = &m->dirs[i];
		size_t keep = 0;

		if (mode == MEMVFS_KEEP)
			keep = d->nops;
		else if (mode == MEMVFS_RANDOM)
			keep = (size_t)(mv_rand(m) % (d->nops + 1));
		if (names_copy(&cur[i], &d->dur) != TEEMS_OK)
			goto out;
		for (size_t k = 0; k < keep; k++)
			if (names_apply(&cur[i], &d->ops[k]) != TEEMS_OK)
				goto out;
		if (names_copy(&dur[i], &cur[i]) != TEEMS_OK)
			goto out;
		total += cur[i].n;
	}
	cs = teems_calloc(total + 1, sizeof(*cs));
	if (cs == NULL)
		goto out;
	for (size_t i = 0; i < m->ndirs; i++) {
		for (size_t j = 0; j < cur[i].n; j++) {
			struct mv_inode *ino = cur[i].v[j].ino;
			size_t k;

			for (k = 0; k < ncs && cs[k].ino != ino; k++)
				;
			if (k < ncs)
				continue;
			cs[ncs].ino = ino;
			if (crash_content(m, &cs[ncs++], mode) != TEEMS_OK)
				goto out;
		}
	}
	/* Phase 2: commit. */
	for (size_t k = 0; k < ncs; k++) {
		struct mv_inode *ino = cs[k].ino;

		teems_free(ino->data);
		ino->data = cs[k].data;
		ino->len = cs[k].len;
		ino->cap = cs[k].cap;
		blob_unref(ino->synced);
		ino->synced = cs[k].blob;
		pend_clear(ino);
		cs[k].data = NULL;
		cs[k].blob = NULL;
	}
	for (size_t i = 0; i < m->ndirs; i++) {
		struct mv_dir *d = &m->dirs[i];

		dir_clear_ops(d);
		names_free(&d->cur);
		names_free(&d->dur);
		d->cur = cur[i];
		d->dur = dur[i];
		cur[i] = (struct mv_names){0};
		dur[i] = (struct mv_names){0};
	}
	kill_handles(m);
	version_push(m);
	rv = TEEMS_OK;
out:
	for (size_t k = 0; k < ncs; k++) {
		teems_free(cs[k].data);
		blob_unref(cs[k].blob);
	}
	teems_free(cs);
	for (size_t i = 0; cur != NULL && i < m->ndirs; i++)
		names_free(&cur[i]);
	for (size_t i = 0; dur != NULL && i < m->ndirs; i++)
		names_free(&dur[i]);
	teems_free(cur);
	teems_free(dur);
	return rv;
}

int memvfs_power_loss(struct store_vfs *vfs, enum memvfs_crash_mode mode)
{
	return mv_power_loss(mv_of(vfs), mode);
}

/* The gate every sync passes: counts it and asks the hook what happens. Returns TEEMS_OK to go
 * on (*after set when a crash must follow the sync) or the error the sync returns. */
static int sync_gate(struct memvfs *m, int *after, enum memvfs_crash_mode *mode)
{
	int act = MEMVFS_HOOK_CONTINUE;

	m->nsyncs++;
	*mode = m->crash_mode;
	*after = 0;
	if (m->hook != NULL)
		act = m->hook(m->hook_arg, m->nsyncs);
	switch (act) {
	case MEMVFS_HOOK_FAIL:
		return TEEMS_EIO;
	case MEMVFS_HOOK_CRASH_BEFORE:
		mv_power_loss(m, *mode);
		return TEEMS_EIO;
	case MEMVFS_HOOK_CRASH_AFTER:
		*after = 1;
		break;
	default:
		break;
	}
	return TEEMS_OK;
}

static int sync_done(struct memvfs *m, int after, enum memvfs_crash_mode mode)
{
	version_push(m);
	if (after) {
		mv_power_loss(m, mode);
		return TEEMS_EIO;
	}
	return TEEMS_OK;
}

/* File operations. */

static int mv_open(struct store_vfs *vfs, const char *path, int flags, struct store_file **out)
{
	struct memvfs *m = mv_of(vfs);
	struct mv_inode *ino = NULL, *fresh = NULL;
	struct mv_file *f;
	const char *name;
	struct mv_dir *d;
	long i;

	if ((flags & (STORE_OPEN_CREATE | STORE_OPEN_TRUNC)) && !(flags & STORE_OPEN_WRITE))
		return TEEMS_EINVAL;
	d = path_split(m, path, &name);
	if (d == NULL)
		return TEEMS_ENOTFOUND;
	if (*name == '\0' || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
		return TEEMS_EINVAL;
	i = names_find(&d->cur, name);
	if (i >= 0 && (flags & STORE_OPEN_CREATE) && (flags & STORE_OPEN_EXCL))
		return TEEMS_EEXIST;
	if (i < 0 && !(flags & STORE_OPEN_CREATE))
		return TEEMS_ENOTFOUND;
	f = teems_calloc(1, sizeof(*f));
	if (f == NULL)
		return TEEMS_ENOMEM;
	if ((flags & STORE_OPEN_TRUNC) && i >= 0 && d->cur.v[i].ino->len > 0) {
		struct mv_inode *t = d->cur.v[i].ino;

		if (mv_reserve((void **)&t->pend, &t->cappend, t->npend + 1, sizeof(*t->pend)) != 0)
			goto oom;
	}
	if (i >= 0) {
		ino = d->cur.v[i].ino;
	} else {
		fresh = ino = ino_new();
		if (ino == NULL)
			goto oom;
		ino_ref(ino); /* held by this function until the handle owns it */
		if (dir_op(d, NULL, name, ino) != TEEMS_OK)
			goto oom;
	}
	if ((flags & STORE_OPEN_TRUNC) && ino->len > 0) {
		ino->pend[ino->npend++] = (struct mv_pend){.off = 0};
		ino->len = 0;
	}
	f->base.vfs = vfs;
	f->m = m;
	f->ino = fresh != NULL ? ino : ino_ref(ino);
	f->writable = (flags & STORE_OPEN_WRITE) != 0;
	f->next = m->files;
	if (m->files != NULL)
		m->files->prev = f;
	m->files = f;
	*out = &f->base;
	return TEEMS_OK;
oom:
	if (fresh != NULL)
		ino_unref(fresh);
	teems_free(f);
	return TEEMS_ENOMEM;
}

static int mv_read(struct store_file *file, void *buf, size_t len, uint64_t off, size_t *nread)
{
	struct mv_file *f = (struct mv_file *)file;
	struct mv_inode *ino = f->ino;
	size_t n = 0;

	if (f->dead)
		return TEEMS_EIO;
	if (off < ino->len) {
		n = ino->len - (size_t)off;
		if (n > len)
			n = len;
		memcpy(buf, ino->data + off, n);
	}
	*nread = n;
	return TEEMS_OK;
}

static int mv_write(struct store_file *file, const void *buf, size_t len, uint64_t off)
{
	struct mv_file *f = (struct mv_file *)file;
	struct memvfs *m = f->m;
	struct mv_inode *ino = f->ino;
	uint8_t *copy;

	if (f->dead || !f->writable)
		return TEEMS_EIO;
	if (m->fail_write_in != UINT64_MAX && m->fail_write_in-- == 0)
		return TEEMS_EIO;
	if (len == 0)
		return TEEMS_OK;
	if (off > SIZE_MAX / 2 || len > SIZE_MAX / 2)
		return TEEMS_EIO;
	if (mv_reserve((void **)&ino->pend, &ino->cappend, ino->npend + 1, sizeof(*ino->pend)) !=
		    TEEMS_OK ||
	    ino_grow(ino, (size_t)off + len) != TEEMS_OK)
		return TEEMS_ENOMEM;
	copy = teems_malloc(len);
	if (copy == NULL)
		return TEEMS_ENOMEM;
	memcpy(copy, buf, len);
	if (off > ino->len)
		memset(ino->data + ino->len, 0, (size_t)off - ino->len);
	memcpy(ino->data + off, buf, len);
	if (off + len > ino->len)
		ino->len = (size_t)off + len;
	ino->pend[ino->npend++] = (struct mv_pend){.off = off, .len = len, .data = copy};
	return TEEMS_OK;
}

static int mv_sync(struct store_file *file)
{
	struct mv_file *f = (struct mv_file *)file;
	struct memvfs *m = f->m;
	enum memvfs_crash_mode mode;
	struct mv_blob *b;
	int after, rv;

	if (f->dead)
		return TEEMS_EIO;
	rv = sync_gate(m, &after, &mode);
	if (rv != TEEMS_OK)
		return rv;
	b = blob_new(f->ino->data, f->ino->len);
	if (b == NULL)
		return TEEMS_ENOMEM;
	blob_unref(f->ino->synced);
	f->ino->synced = b;
	pend_clear(f->ino);
	return sync_done(m, after, mode);
}

static int mv_size(struct store_file *file, uint64_t *size)
{
	struct mv_file *f = (struct mv_file *)file;

	if (f->dead)
		return TEEMS_EIO;
	*size = f->ino->len;
	return TEEMS_OK;
}

static int mv_truncate(struct store_file *file, uint64_t size)
{
	struct mv_file *f = (struct mv_file *)file;
	struct mv_inode *ino = f->ino;

	if (f->dead || !f->writable || size > SIZE_MAX / 2)
		return TEEMS_EIO;
	if (mv_reserve((void **)&ino->pend, &ino->cappend, ino->npend + 1, sizeof(*ino->pend)) !=
		    TEEMS_OK ||
	    ino_grow(ino, (size_t)size) != TEEMS_OK)
		return TEEMS_ENOMEM;
	if (size > ino->len)
		memset(ino->data + ino->len, 0, (size_t)size - ino->len);
	ino->len = (size_t)size;
	ino->pend[ino->npend++] = (struct mv_pend){.off = size};
	return TEEMS_OK;
}

static void mv_close(struct store_file *file)
{
	struct mv_file *f = (struct mv_file *)file;
	struct memvfs *m = f->m;

	if (f->prev != NULL)
		f->prev->next = f->next;
	else
		m->files = f->next;
	if (f->next != NULL)
		f->next->prev = f->prev;
	ino_unref(f->ino);
	teems_free(f);
}

/* Directory operations. */

static int mv_rename(struct store_vfs *vfs, const char *from, const char *to)
{
	struct memvfs *m = mv_of(vfs);
	const char *fname, *tname;
	struct mv_dir *fd = path_split(m, from, &fname);
	struct mv_dir *td = path_split(m, to, &tname);
	struct mv_inode *ino;
	long i;
	int rv;

	if (fd == NULL || td == NULL)
		return TEEMS_ENOTFOUND;
	i = names_find(&fd->cur, fname);
	if (i < 0)
		return TEEMS_ENOTFOUND;
	if (*tname == '\0')
		return TEEMS_EINVAL;
	/* Only renames within one directory (all the store does): a rename across directories
	 * would become durable in two steps, which this model does not track. */
	if (fd != td)
		return TEEMS_EINVAL;
	ino = ino_ref(fd->cur.v[i].ino);
	rv = dir_op(fd, fname, tname, ino);
	ino_unref(ino);
	return rv;
}

static int mv_unlink(struct store_vfs *vfs, const char *path)
{
	struct memvfs *m = mv_of(vfs);
	const char *name;
	struct mv_dir *d = path_split(m, path, &name);

	if (d == NULL || names_find(&d->cur, name) < 0)
		return TEEMS_ENOTFOUND;
	return dir_op(d, name, NULL, NULL);
}

static int mv_list(struct store_vfs *vfs, const char *dir, struct store_dirlist *out)
{
	struct memvfs *m = mv_of(vfs);
	struct mv_dir *d = dir_find(m, dir, strlen(dir));
	struct store_dirlist l = {0};

	if (d == NULL)
		return TEEMS_ENOTFOUND;
	l.names = teems_calloc(d->cur.n + 1, sizeof(*l.names));
	if (l.names == NULL)
		return TEEMS_ENOMEM;
	for (size_t i = 0; i < d->cur.n; i++) {
		l.names[i] = mv_strdup(d->cur.v[i].name);
		if (l.names[i] == NULL) {
			store_dirlist_free(&l);
			return TEEMS_ENOMEM;
		}
		l.n++;
	}
	*out = l;
	return TEEMS_OK;
}

static int mv_sync_dir(struct store_vfs *vfs, const char *dir)
{
	struct memvfs *m = mv_of(vfs);
	struct mv_dir *d = dir_find(m, dir, strlen(dir));
	enum memvfs_crash_mode mode;
	struct mv_names t;
	int after, rv;

	if (d == NULL)
		return TEEMS_ENOTFOUND;
	rv = sync_gate(m, &after, &mode);
	if (rv != TEEMS_OK)
		return rv;
	if (names_copy(&t, &d->cur) != TEEMS_OK)
		return TEEMS_ENOMEM;
	names_free(&d->dur);
	d->dur = t;
	dir_clear_ops(d);
	return sync_done(m, after, mode);
}

static int mv_mkdir_path(struct memvfs *m, const char *dir)
{
	char *copy;

	if (dir_find(m, dir, strlen(dir)) != NULL)
		return TEEMS_EEXIST;
	if (*dir == '\0')
		return TEEMS_EINVAL;
	if (mv_reserve((void **)&m->dirs, &m->capdirs, m->ndirs + 1, sizeof(*m->dirs)) != TEEMS_OK)
		return TEEMS_ENOMEM;
	copy = mv_strdup(dir);
	if (copy == NULL)
		return TEEMS_ENOMEM;
	m->dirs[m->ndirs++] = (struct mv_dir){.path = copy};
	return TEEMS_OK;
}

static int mv_mkdir(struct store_vfs *vfs, const char *dir)
{
	return mv_mkdir_path(mv_of(vfs), dir);
}

static void mv_destroy(struct store_vfs *vfs)
{
	struct memvfs *m = mv_of(vfs);

	while (m->files != NULL)
		mv_close(&m->files->base); /* a test that forgot a handle still frees cleanly */
	for (size_t i = 0; i < m->ndirs; i++) {
		dir_clear_ops(&m->dirs[i]);
		teems_free(m->dirs[i].ops);
		names_free(&m->dirs[i].cur);
		names_free(&m->dirs[i].dur);
		teems_free(m->dirs[i].path);
	}
	teems_free(m->dirs);
	if (m->keep_history)
		for (uint64_t v = 0; v <= m->version; v++)
			version_free(&m->versions[v]);
	teems_free(m->versions);
	teems_free(m);
}

struct store_vfs *memvfs_new(uint64_t seed, int keep_history)
{
	struct memvfs *m = teems_calloc(1, sizeof(*m));

	if (m == NULL)
		return NULL;
	m->vfs = (struct store_vfs){
		.open = mv_open,
		.read = mv_read,
		.write = mv_write,
		.sync = mv_sync,
		.size = mv_size,
		.truncate = mv_truncate,
		.close = mv_close,
		.rename = mv_rename,
		.unlink = mv_unlink,
		.list = mv_list,
		.sync_dir = mv_sync_dir,
		.mkdir = mv_mkdir,
		.destroy = mv_destroy,
	};
	m->rng = seed;
	m->fail_write_in = UINT64_MAX;
	m->crash_mode = MEMVFS_DROP;
	if (mv_mkdir_path(m, ".") != TEEMS_OK)
		goto fail;
	if (keep_history) {
		if (mv_reserve((void **)&m->versions, &m->capversions, 1, sizeof(*m->versions)) !=
		    TEEMS_OK)
			goto fail;
		m->versions[0] = (struct mv_version){.valid = 1};
		m->keep_history = 1;
	}
	return &m->vfs;
fail:
	mv_destroy(&m->vfs);
	return NULL;
}

uint64_t memvfs_version(struct store_vfs *vfs)
{
	return mv_of(vfs)->version;
}

int memvfs_rollback(struct store_vfs *vfs, uint64_t version)
{
	struct memvfs *m = mv_of(vfs);
	struct mv_version *v;
	struct mv_names *t = NULL, *t2 = NULL;
	struct mv_inode **inos = NULL;
	int rv = TEEMS_ENOMEM;

	if (!m->keep_history || version > m->version || !m->versions[version].valid)
		return TEEMS_EINVAL;
	v = &m->versions[version];
	t = teems_calloc(m->ndirs + 1, sizeof(*t));
	t2 = teems_calloc(m->ndirs + 1, sizeof(*t2));
	inos = teems_calloc(v->nblobs + 1, sizeof(*inos));
	if (t == NULL || t2 == NULL || inos == NULL)
		goto out;
	for (size_t k = 0; k < v->nblobs; k++) {
		struct mv_blob *b = v->blobs[k];

		inos[k] = ino_new();
		if (inos[k] == NULL)
			goto out;
		ino_ref(inos[k]);
		if (b != NULL && b->len > 0) {
			if (ino_grow(inos[k], b->len) != TEEMS_OK)
				goto out;
			memcpy(inos[k]->data, b->data, b->len);
			inos[k]->len = b->len;
		}
		inos[k]->synced = blob_ref(b);
	}
	for (size_t i = 0; i < v->ndirs; i++)
		for (size_t j = 0; j < v->dirs[i].n; j++)
			if (names_set(&t[v->dirs[i].dir], v->dirs[i].v[j].name,
				      inos[v->dirs[i].v[j].ino]) != TEEMS_OK)
				goto out;
	for (size_t i = 0; i < m->ndirs; i++)
		if (names_copy(&t2[i], &t[i]) != TEEMS_OK)
			goto out;
	for (size_t i = 0; i < m->ndirs; i++) {
		dir_clear_ops(&m->dirs[i]);
		names_free(&m->dirs[i].cur);
		names_free(&m->dirs[i].dur);
		m->dirs[i].cur = t[i];
		m->dirs[i].dur = t2[i];
		t[i] = (struct mv_names){0};
		t2[i] = (struct mv_names){0};
	}
	kill_handles(m);
	rv = TEEMS_OK;
out:
	for (size_t i = 0; t != NULL && i < m->ndirs; i++)
		names_free(&t[i]);
	for (size_t i = 0; t2 != NULL && i < m->ndirs; i++)
		names_free(&t2[i]);
	teems_free(t2);
	for (size_t k = 0; inos != NULL && k < v->nblobs; k++)
		if (inos[k] != NULL)
			ino_unref(inos[k]);
	teems_free(t);
	teems_free(inos);
	return rv;
}

uint64_t memvfs_sync_count(struct store_vfs *vfs)
{
	return mv_of(vfs)->nsyncs;
}

void memvfs_set_sync_hook(struct store_vfs *vfs, memvfs_sync_hook hook, void *arg)
{
	struct memvfs *m = mv_of(vfs);

	m->hook = hook;
	m->hook_arg = arg;
}

static int crash_at_hook(void *arg, uint64_t nth)
{
	struct memvfs *m = arg;

	return nth == m->crash_nth ? m->crash_action : MEMVFS_HOOK_CONTINUE;
}

void memvfs_crash_at_sync(struct store_vfs *vfs, uint64_t nth, int action,
			  enum memvfs_crash_mode mode)
{
	struct memvfs *m = mv_of(vfs);

	m->crash_nth = nth;
	m->crash_action = action;
	m->crash_mode = mode;
	memvfs_set_sync_hook(vfs, nth == 0 ? NULL : crash_at_hook, m);
}

void memvfs_fail_write(struct store_vfs *vfs, uint64_t nth)
{
	mv_of(vfs)->fail_write_in = nth;
}

int memvfs_put(struct store_vfs *vfs, const char *path, const void *data, size_t len)
{
	struct memvfs *m = mv_of(vfs);
	const char *name;
	struct mv_dir *d = path_split(m, path, &name);
	char *cd = NULL, *cc = NULL;
	struct mv_inode *ino;
	long sd, sc;
	int rv = TEEMS_ENOMEM;

	if (d == NULL)
		return TEEMS_ENOTFOUND;
	if (*name == '\0')
		return TEEMS_EINVAL;
	ino = ino_new();
	if (ino == NULL)
		return TEEMS_ENOMEM;
	ino_ref(ino);
	if (len > 0) {
		if (ino_grow(ino, len) != TEEMS_OK)
			goto out;
		memcpy(ino->data, data, len);
		ino->len = len;
	}
	ino->synced = blob_new(ino->data, len);
	if (ino->synced == NULL)
		goto out;
	/* Both bindings happen together or not at all. */
	if (names_prepare(&d->dur, name, &sd, &cd) != TEEMS_OK ||
	    names_prepare(&d->cur, name, &sc, &cc) != TEEMS_OK)
		goto out;
	names_commit(&d->dur, sd, cd, ino);
	names_commit(&d->cur, sc, cc, ino);
	cd = cc = NULL;
	version_push(m);
	rv = TEEMS_OK;
out:
	teems_free(cd);
	teems_free(cc);
	ino_unref(ino);
	return rv;
}

int memvfs_get(struct store_vfs *vfs, const char *path, uint8_t **data, size_t *len)
{
	struct memvfs *m = mv_of(vfs);
	const char *name;
	struct mv_dir *d = path_split(m, path, &name);
	struct mv_inode *ino;
	long i;

	if (d == NULL || (i = names_find(&d->cur, name)) < 0)
		return TEEMS_ENOTFOUND;
	ino = d->cur.v[i].ino;
	*data = NULL;
	*len = ino->len;
	if (ino->len == 0)
		return TEEMS_OK;
	*data = teems_malloc(ino->len);
	if (*data == NULL)
		return TEEMS_ENOMEM;
	memcpy(*data, ino->data, ino->len);
	return TEEMS_OK;
}
