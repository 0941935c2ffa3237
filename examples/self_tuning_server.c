/*
 * self_tuning_server — a program that optimizes itself while it serves.
 *
 * Worker threads run a small in-memory key-value service: each request is a
 * text command ("SET k v", "GET k", "INCR k", "APPEND k v", "SUM a b c")
 * that is tokenized, dispatched through a command table, executed against
 * a hash table and answered with a formatted reply. After a warm-up the
 * main thread calls ocolos_optimize_self() while the workers keep serving,
 * and prints throughput before and after, with what the round did.
 *
 * Build with -Wl,--emit-relocs (see examples/CMakeLists.txt).
 * Because timings on shared machines drift by tens of percent, it then
 * also measures the layout the way that cancels the drift: it switches the
 * same process between the optimized and the original code
 * (ocolos_revert_self / ocolos_reapply_self) for a few paired windows and
 * prints the median of the paired ratios.
 *
 * Usage: self_tuning_server [threads] [warmup_s] [measure_s] [ab_pairs]
 */
#include <ocolos/ocolos.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NBUCKETS 4096
#define KEYMAX 32
#define VALMAX 96

struct entry {
	char key[KEYMAX];
	char val[VALMAX];
	struct entry *next;
};

struct store {
	struct entry *b[NBUCKETS];
};

struct request {
	int argc;
	char *argv[4];
	char buf[160];
};

typedef int (*command_fn)(struct store *, const struct request *, char *out, size_t outlen);

static uint32_t hash_str(const char *s)
{
	uint32_t h = 2166136261u;
	while (*s)
		h = (h ^ (uint8_t)*s++) * 16777619u;
	return h;
}

static struct entry *lookup(struct store *st, const char *key, int create)
{
	uint32_t h = hash_str(key) % NBUCKETS;
	for (struct entry *e = st->b[h]; e; e = e->next)
		if (!strcmp(e->key, key))
			return e;
	if (!create)
		return NULL;
	struct entry *e = calloc(1, sizeof(*e));
	if (!e)
		abort();
	snprintf(e->key, sizeof(e->key), "%s", key);
	e->next = st->b[h];
	st->b[h] = e;
	return e;
}

static int cmd_set(struct store *st, const struct request *r, char *out, size_t n)
{
	if (r->argc != 3)
		return snprintf(out, n, "-ERR wrong number of arguments");
	snprintf(lookup(st, r->argv[1], 1)->val, VALMAX, "%s", r->argv[2]);
	return snprintf(out, n, "+OK");
}

static int cmd_get(struct store *st, const struct request *r, char *out, size_t n)
{
	struct entry *e = r->argc == 2 ? lookup(st, r->argv[1], 0) : NULL;
	return e ? snprintf(out, n, "$%zu %s", strlen(e->val), e->val) : snprintf(out, n, "$-1");
}

static int cmd_incr(struct store *st, const struct request *r, char *out, size_t n)
{
	if (r->argc != 2)
		return snprintf(out, n, "-ERR wrong number of arguments");
	struct entry *e = lookup(st, r->argv[1], 1);
	long v = strtol(e->val, NULL, 10) + 1;
	snprintf(e->val, VALMAX, "%ld", v);
	return snprintf(out, n, ":%ld", v);
}

static int cmd_append(struct store *st, const struct request *r, char *out, size_t n)
{
	if (r->argc != 3)
		return snprintf(out, n, "-ERR wrong number of arguments");
	struct entry *e = lookup(st, r->argv[1], 1);
	size_t l = strlen(e->val);
	if (l + strlen(r->argv[2]) >= VALMAX)
		l = 0; /* keep values bounded: wrap around */
	snprintf(e->val + l, VALMAX - l, "%s", r->argv[2]);
	return snprintf(out, n, ":%zu", strlen(e->val));
}

static int cmd_sum(struct store *st, const struct request *r, char *out, size_t n)
{
	(void)st;
	long s = 0;
	for (int i = 1; i < r->argc; i++)
		s += strtol(r->argv[i], NULL, 10);
	return snprintf(out, n, ":%ld", s);
}

static const struct {
	const char *name;
	command_fn fn;
} commands[] = {
	{ "SET", cmd_set }, { "GET", cmd_get }, { "INCR", cmd_incr },
	{ "APPEND", cmd_append }, { "SUM", cmd_sum },
};

static int tokenize(struct request *r)
{
	r->argc = 0;
	for (char *p = r->buf; *p && r->argc < 4;) {
		while (*p == ' ')
			p++;
		if (!*p)
			break;
		r->argv[r->argc++] = p;
		while (*p && *p != ' ')
			p++;
		if (*p)
			*p++ = '\0';
	}
	return r->argc;
}

static int dispatch(struct store *st, struct request *r, char *out, size_t n)
{
	if (!tokenize(r))
		return snprintf(out, n, "-ERR empty request");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(commands[i].name, r->argv[0]))
			return commands[i].fn(st, r, out, n);
	return snprintf(out, n, "-ERR unknown command '%s'", r->argv[0]);
}

static void make_request(struct request *r, uint64_t *rng)
{
	*rng = *rng * 6364136223846793005ull + 1442695040888963407ull;
	uint32_t x = (uint32_t)(*rng >> 33);
	unsigned key = x % 5000;
	switch (x % 8) {
	case 0: case 1: snprintf(r->buf, sizeof(r->buf), "SET user:%u v%u", key, x % 977); break;
	case 2: case 3: case 4: snprintf(r->buf, sizeof(r->buf), "GET user:%u", key); break;
	case 5: snprintf(r->buf, sizeof(r->buf), "INCR ctr:%u", key % 64); break;
	case 6: snprintf(r->buf, sizeof(r->buf), "APPEND log:%u x%u", key % 32, x % 10); break;
	default: snprintf(r->buf, sizeof(r->buf), "SUM %u %u %u", x % 100, key, x % 7); break;
	}
}

static atomic_ulong served;
static atomic_int stopping;

static void *worker(void *arg)
{
	struct store *st = calloc(1, sizeof(*st)); /* one shard per worker */
	uint64_t rng = (uint64_t)(uintptr_t)arg * 7919 + 1;
	uint64_t replies = 0;
	char out[192];
	struct request r;
	while (!atomic_load_explicit(&stopping, memory_order_relaxed)) {
		for (int i = 0; i < 256; i++) {
			make_request(&r, &rng);
			replies += (uint64_t)dispatch(st, &r, out, sizeof(out));
		}
		atomic_fetch_add_explicit(&served, 256, memory_order_relaxed);
	}
	return (void *)(uintptr_t)replies;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double throughput(double seconds)
{
	unsigned long a = atomic_load(&served);
	double t0 = now_s();
	usleep((useconds_t)(seconds * 1e6));
	return (double)(atomic_load(&served) - a) / (now_s() - t0);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Paired windows C1 / C0 (order alternating, to cancel drift within a
 * pair); prints the median ratio and its spread. Ends on C1. */
static void ab_compare(int pairs, double secs)
{
	double ratio[64];
	int n = 0;
	for (int i = 0; i < pairs && i < 64; i++) {
		double c1, c0;
		if (i & 1) {
			ocolos_revert_self(NULL);
			c0 = throughput(secs);
			ocolos_reapply_self(NULL);
			c1 = throughput(secs);
		} else {
			c1 = throughput(secs);
			ocolos_revert_self(NULL);
			c0 = throughput(secs);
			ocolos_reapply_self(NULL);
		}
		ratio[n++] = c1 / c0;
	}
	if (!n)
		return;
	qsort(ratio, (size_t)n, sizeof(ratio[0]), cmp_double);
	printf("in-process A/B (%d pairs of %.1f s, optimized vs original code, same process): "
	       "median %.3fx, range %.3f-%.3f\n", n, secs, ratio[n / 2], ratio[0], ratio[n - 1]);
}

static void log_cb(enum ocolos_log_level level, const char *msg, void *user)
{
	(void)user;
	if (level <= OCOLOS_LOG_INFO)
		fprintf(stderr, "  ocolos: %s\n", msg);
}

int main(int argc, char **argv)
{
	int nthreads = argc > 1 ? atoi(argv[1]) : 2;
	double warmup = argc > 2 ? atof(argv[2]) : 2, measure = argc > 3 ? atof(argv[3]) : 3;
	int ab_pairs = argc > 4 ? atoi(argv[4]) : 4;
	if (nthreads < 1 || nthreads > 64)
		nthreads = 2;
	pthread_t t[64];
	for (int i = 0; i < nthreads; i++)
		pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(i + 1));
	printf("self_tuning_server: %d worker threads, warm-up %.0f s\n", nthreads, warmup);
	usleep((useconds_t)(warmup * 1e6));
	double before = throughput(measure);
	printf("before: %.0f requests/s\n", before);

	OCOLOS_OPTS(ocolos_opts, opts, .log_fn = log_cb);
	OCOLOS_OPTS(ocolos_stats, st);
	int rc = ocolos_optimize_self(&opts, &st);
	if (rc) {
		printf("optimization failed: %s\n  %s\n", ocolos_strerror(rc), ocolos_last_error(NULL));
	} else {
		printf("optimized: %u functions moved, C1 %.1f KiB at 0x%llx, %u call sites + %u "
		       "pointer slots redirected\n", st.functions_moved, (double)st.c1_bytes / 1024,
		       (unsigned long long)st.c1_addr, st.call_sites_patched, st.pointer_slots_patched);
		printf("round: %llu samples (%llu in the binary), BOLT %.0f ms, pause %.3f ms "
		       "(%u threads stopped)\n", (unsigned long long)st.samples,
		       (unsigned long long)st.samples_in_binary, (double)st.bolt_ns / 1e6,
		       (double)st.pause_ns / 1e6, st.threads_stopped);
	}
	double after = throughput(measure);
	printf("after:  %.0f requests/s (%.2fx, sequential: includes machine drift)\n", after,
	       after / before);
	if (!rc)
		ab_compare(ab_pairs, measure / 2);
	printf("(a program this small is not front-end bound; bench/ has workloads where layout "
	       "matters)\n");
	atomic_store(&stopping, 1);
	for (int i = 0; i < nthreads; i++)
		pthread_join(t[i], NULL);
	return rc ? 1 : 0;
}
