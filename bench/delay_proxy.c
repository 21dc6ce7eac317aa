/* bench-delay-proxy: TCP forwarding with a fixed one-way delay, for benchmarks only.
 *
 *   bench-delay-proxy [--seconds S] DELAY_US LISTEN_PORT:TARGET_PORT...
 *
 * Every byte read on one side of a proxied connection is written to the other side DELAY_US
 * microseconds later, in both directions, so a request and its reply see a round trip of
 * 2 * DELAY_US more than loopback gives. bench/compare.sh puts one in front of each replica's
 * peer port to model replicas that are not on one machine (the kernel here has no netem).
 * Addresses are 127.0.0.1 only. The process exits after S seconds (default 3600) or on
 * SIGTERM/SIGINT, whichever is first.
 *
 * One thread, epoll, and one timerfd with nanosecond resolution (libuv's timers count whole
 * milliseconds, too coarse for sub-millisecond delays). Because the delay is the same for every
 * chunk, chunks fall due in the order they were read: one FIFO of pending chunks serves all
 * connections and the timer is armed for its head.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_MAPS 16
#define READ_CHUNK 65536
/* Reading stops on a side while this much of its data is in flight (pending or unwritten). */
#define MAX_IN_FLIGHT (8u << 20)

struct conn;

/* One direction of a proxied connection: bytes read from `in` go to `out`. */
struct dir {
	struct conn *c;
	int in, out;
	size_t in_flight;    /* bytes read but not yet written */
	struct chunk *ready; /* due, waiting for `out` to take them */
	struct chunk **ready_tail;
	bool reading; /* `in` is being read (not paused for backpressure, not at EOF) */
};

struct chunk {
	struct chunk *next; /* in the pending FIFO, then in the direction's ready list */
	struct dir *d;
	uint64_t due_ns;
	size_t len, off; /* len 0: the sender shut down its side; shut down `out` */
	char data[];
};

struct conn {
	int fd[2]; /* accepted side, target side */
	struct dir dir[2];
	bool connecting; /* target connect in progress */
	bool dead;
	unsigned refs; /* pending chunks that point at this connection, plus 1 while open */
};

/* epoll's data.ptr: what became ready */
struct endpoint {
	enum { EP_LISTEN, EP_TIMER, EP_CONN } kind;
	int fd;
	uint16_t target; /* EP_LISTEN */
	struct conn *c;	 /* EP_CONN */
	int side;	 /* EP_CONN: index in c->fd */
};

static int ep;
static int tfd;
static uint64_t delay_ns;
static struct chunk *pending, **pending_tail = &pending;
static volatile sig_atomic_t stop;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
	fprintf(stderr, "bench-delay-proxy: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n);

	if (p == NULL)
		die("malloc");
	return p;
}

static void arm_timer(void)
{
	struct itimerspec its;

	memset(&its, 0, sizeof(its));
	if (pending != NULL) {
		/* absolute; a due time already past fires at once (it must not be zero: that
		 * disarms) */
		uint64_t due = pending->due_ns ? pending->due_ns : 1;

		its.it_value.tv_sec = (time_t)(due / 1000000000u);
		its.it_value.tv_nsec = (long)(due % 1000000000u);
	}
	if (timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL) != 0)
		die("timerfd_settime");
}

/* The events each of the connection's fds waits for. */
static void update_events(struct conn *c)
{
	for (int s = 0; s < 2; s++) {
		struct epoll_event ev;

		if (c->fd[s] < 0)
			continue;
		memset(&ev, 0, sizeof(ev));
		/* side s reads for direction s and writes for direction 1 - s */
		if (c->dir[s].reading && !(s == 1 && c->connecting))
			ev.events |= EPOLLIN;
		if (c->dir[1 - s].ready != NULL || (s == 1 && c->connecting))
			ev.events |= EPOLLOUT;
		/* the endpoint structs live right after the conn (see accept_one) */
		ev.data.ptr = (struct endpoint *)(c + 1) + s;
		if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd[s], &ev) != 0)
			die("epoll_ctl mod");
	}
}

/* Connections whose last reference went; freed after the current batch of events, which may
 * still name them. */
static struct conn *graveyard[256];
static unsigned graves;

static void conn_unref(struct conn *c)
{
	if (--c->refs != 0)
		return;
	if (graves == sizeof(graveyard) / sizeof(graveyard[0])) {
		c->refs =
			1; /* full: keep it (a bounded leak) rather than free it under the batch */
		return;
	}
	graveyard[graves++] = c;
}

static void conn_close(struct conn *c)
{
	if (c->dead)
		return;
	c->dead = true;
	for (int s = 0; s < 2; s++) {
		struct chunk *k = c->dir[s].ready;

		while (k != NULL) {
			struct chunk *n = k->next;

			free(k);
			k = n;
		}
		c->dir[s].ready = NULL;
		if (c->fd[s] >= 0)
			close(c->fd[s]);
		c->fd[s] = -1;
	}
	conn_unref(c);
}

/* Writes what is due on direction d; false if the connection died. */
static bool flush_dir(struct dir *d)
{
	struct conn *c = d->c;

	while (d->ready != NULL) {
		struct chunk *k = d->ready;

		if (k->len == 0) {
			shutdown(d->out, SHUT_WR);
		} else {
			ssize_t w = send(d->out, k->data + k->off, k->len - k->off, MSG_NOSIGNAL);

			if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
				return true;
			if (w <= 0) {
				conn_close(c);
				return false;
			}
			k->off += (size_t)w;
			d->in_flight -= (size_t)w;
			if (k->off < k->len)
				return true;
		}
		d->ready = k->next;
		if (d->ready == NULL)
			d->ready_tail = &d->ready;
		free(k);
	}
	if (!d->reading && d->in_flight < MAX_IN_FLIGHT / 2 && d->in >= 0)
		d->reading = true; /* backpressure released (EOF keeps reading off: in is shut) */
	return true;
}

static void enqueue(struct dir *d, const char *buf, size_t len)
{
	struct chunk *k = xmalloc(sizeof(*k) + len);

	k->next = NULL;
	k->d = d;
	k->due_ns = now_ns() + delay_ns;
	k->len = len;
	k->off = 0;
	memcpy(k->data, buf, len);
	d->c->refs++;
	d->in_flight += len;
	*pending_tail = k;
	pending_tail = &k->next;
	if (pending == k)
		arm_timer();
}

static void on_timer(void)
{
	uint64_t expirations, now = now_ns();

	if (read(tfd, &expirations, sizeof(expirations)) < 0 && errno != EAGAIN)
		die("read timerfd");
	while (pending != NULL && pending->due_ns <= now) {
		struct chunk *k = pending;
		struct conn *c = k->d->c;

		pending = k->next;
		if (pending == NULL)
			pending_tail = &pending;
		k->next = NULL;
		if (c->dead) {
			free(k);
		} else {
			struct dir *d = k->d;

			*d->ready_tail = k;
			d->ready_tail = &k->next;
			if (flush_dir(d))
				update_events(c);
		}
		conn_unref(c);
	}
	arm_timer();
}

static void on_readable(struct conn *c, int s)
{
	struct dir *d = &c->dir[s];
	char buf[READ_CHUNK];

	while (d->reading) {
		ssize_t r = recv(d->in, buf, sizeof(buf), 0);

		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (r < 0) {
			conn_close(c);
			return;
		}
		enqueue(d, buf, (size_t)r); /* r == 0: EOF travels with the same delay */
		if (r == 0) {
			d->reading = false;
			break;
		}
		if (d->in_flight >= MAX_IN_FLIGHT)
			d->reading = false;
	}
	update_events(c);
}

static void on_writable(struct conn *c, int s)
{
	if (s == 1 && c->connecting) {
		int err = 0;
		socklen_t len = sizeof(err);

		if (getsockopt(c->fd[1], SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
			conn_close(c);
			return;
		}
		c->connecting = false;
	}
	if (!flush_dir(&c->dir[1 - s]))
		return;
	update_events(c);
}

static void nodelay(int fd)
{
	int one = 1;

	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void accept_one(struct endpoint *l)
{
	struct sockaddr_in to;
	struct conn *c;
	struct endpoint *e;
	int a = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), b;

	if (a < 0)
		return;
	b = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (b < 0) {
		close(a);
		return;
	}
	nodelay(a);
	nodelay(b);
	memset(&to, 0, sizeof(to));
	to.sin_family = AF_INET;
	to.sin_port = htons(l->target);
	to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(b, (struct sockaddr *)&to, sizeof(to)) != 0 && errno != EINPROGRESS) {
		close(a);
		close(b);
		return;
	}
	/* the conn and its two endpoints in one allocation */
	c = xmalloc(sizeof(*c) + 2 * sizeof(struct endpoint));
	memset(c, 0, sizeof(*c) + 2 * sizeof(struct endpoint));
	c->fd[0] = a;
	c->fd[1] = b;
	c->connecting = true;
	c->refs = 1;
	e = (struct endpoint *)(c + 1);
	for (int s = 0; s < 2; s++) {
		struct epoll_event ev;

		c->dir[s].c = c;
		c->dir[s].in = c->fd[s];
		c->dir[s].out = c->fd[1 - s];
		c->dir[s].ready_tail = &c->dir[s].ready;
		c->dir[s].reading = true;
		e[s].kind = EP_CONN;
		e[s].fd = c->fd[s];
		e[s].c = c;
		e[s].side = s;
		memset(&ev, 0, sizeof(ev));
		ev.data.ptr = &e[s];
		if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd[s], &ev) != 0)
			die("epoll_ctl add");
	}
	update_events(c);
}

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static int listen_on(uint16_t port)
{
	struct sockaddr_in sa;
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		die("socket");
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons(port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
		die("bind");
	if (listen(fd, 64) != 0)
		die("listen");
	return fd;
}

static unsigned long parse_num(const char *s, unsigned long max, const char *what)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v > max) {
		fprintf(stderr, "bench-delay-proxy: bad %s '%s'\n", what, s);
		exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	static struct endpoint listeners[MAX_MAPS], timer_ep;
	unsigned long seconds = 3600;
	int i = 1, nmaps = 0;
	uint64_t deadline;
	struct epoll_event ev;

	if (argc > 2 && strcmp(argv[1], "--seconds") == 0) {
		seconds = parse_num(argv[2], 86400, "--seconds");
		i = 3;
	}
	if (argc - i < 2 || argc - i - 1 > MAX_MAPS) {
		fprintf(stderr,
			"usage: bench-delay-proxy [--seconds S] DELAY_US "
			"LISTEN_PORT:TARGET_PORT... (at most %d)\n",
			MAX_MAPS);
		return 2;
	}
	delay_ns = parse_num(argv[i++], 10000000, "DELAY_US") * 1000u;
	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	signal(SIGPIPE, SIG_IGN);
	ep = epoll_create1(EPOLL_CLOEXEC);
	tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (ep < 0 || tfd < 0)
		die("epoll/timerfd");
	timer_ep.kind = EP_TIMER;
	timer_ep.fd = tfd;
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.ptr = &timer_ep;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev) != 0)
		die("epoll_ctl timer");
	for (; i < argc; i++) {
		char *colon = strchr(argv[i], ':');

		if (colon == NULL) {
			fprintf(stderr, "bench-delay-proxy: '%s' is not LISTEN_PORT:TARGET_PORT\n",
				argv[i]);
			return 2;
		}
		*colon = '\0';
		listeners[nmaps].kind = EP_LISTEN;
		listeners[nmaps].fd = listen_on((uint16_t)parse_num(argv[i], 65535, "port"));
		listeners[nmaps].target = (uint16_t)parse_num(colon + 1, 65535, "port");
		ev.events = EPOLLIN;
		ev.data.ptr = &listeners[nmaps];
		if (epoll_ctl(ep, EPOLL_CTL_ADD, listeners[nmaps].fd, &ev) != 0)
			die("epoll_ctl listen");
		nmaps++;
	}
	deadline = now_ns() + (uint64_t)seconds * 1000000000u;
	while (!stop && now_ns() < deadline) {
		struct epoll_event evs[64];
		int n = epoll_wait(ep, evs, 64, 1000);

		if (n < 0 && errno != EINTR)
			die("epoll_wait");
		for (int k = 0; k < n; k++) {
			struct endpoint *e = evs[k].data.ptr;

			if (e->kind == EP_LISTEN) {
				accept_one(e);
			} else if (e->kind == EP_TIMER) {
				on_timer();
			} else {
				struct conn *c = e->c;

				if (c->dead)
					continue;
				if (evs[k].events & EPOLLOUT)
					on_writable(c, e->side);
				if (!c->dead && (evs[k].events & (EPOLLIN | EPOLLHUP)))
					on_readable(c, e->side);
				/* the peer is gone both ways (or failed): nothing more can cross */
				if (!c->dead && (evs[k].events & (EPOLLERR | EPOLLHUP)))
					conn_close(c);
			}
		}
		while (graves > 0)
			free(graveyard[--graves]);
	}
	return 0;
}
