/*
 * perf-lbr backend and LBR profile writer, without a PMU.
 *
 * Test generator: the unit fixture is run under ptrace and single-stepped
 * from its first instruction to its exit; every step whose next IP is not
 * the following instruction (length from the Zydis decoder) is a taken
 * branch — the exact sequence an LBR would have recorded, including the
 * dynamic loader, libc, the PLT and returns, at ASLR run-time addresses.
 * Snapshots of the last 16 or 32 branches, newest first, are encoded as
 * PERF_RECORD_SAMPLE records (plus LOST and unrelated records) into a small
 * mmap-style ring that wraps, drained by the backend's parser, and every
 * field is compared. The stacks are then written with infer_write_lbr and
 * read back by the real llvm-bolt (`--pa -p`, no `--ba`): it must profile
 * the fixture's hot functions, not the cold one, and report no mismatching
 * traces. A hand-built stack checks the exact records (B/F/f, "X:0",
 * kernel entries, aggregation). Finally the probe: OCOLOS_ENOTSUP with a
 * reason on machines without branch stacks (this VM), else a real 200 ms
 * collection must deliver stacks.
 * argv: fixture llvm-bolt
 */
#include <Zydis/Zydis.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/procmaps.h"
#include "elf/binary.h"
#include "infer/profile.h"
#include "sample/perf_lbr.h"
#include "sample/sample.h"
#include "check.h"

/* ---- tracer: the fixture's real taken branches ------------------------- */

struct trace {
	struct sample_branch *v;
	size_t n, cap;
	uint64_t bias; /* of the fixture in the traced process */
	pid_t pid;
	uint64_t steps;
};

#define LEN_CACHE (1u << 16)
struct len_cache {
	uint64_t addr[LEN_CACHE];
	uint8_t len[LEN_CACHE];
};

static int push_branch(struct trace *t, uint64_t from, uint64_t to)
{
	if (t->n == t->cap) {
		size_t cap = t->cap ? 2 * t->cap : 4096;
		void *p = realloc(t->v, cap * sizeof(*t->v));
		if (!p)
			return -1;
		t->v = p;
		t->cap = cap;
	}
	t->v[t->n++] = (struct sample_branch){ from, to };
	return 0;
}

/* Length of the instruction at `ip` in the tracee (memoized). */
static unsigned insn_len(struct len_cache *c, const ZydisDecoder *dec, int memfd, uint64_t ip)
{
	size_t h = (size_t)((ip * 0x9e3779b97f4a7c15ull) >> 48) & (LEN_CACHE - 1);
	while (c->addr[h] && c->addr[h] != ip)
		h = (h + 1) & (LEN_CACHE - 1);
	if (c->addr[h] == ip)
		return c->len[h];
	uint8_t buf[15];
	ssize_t got = pread(memfd, buf, sizeof(buf), (off_t)ip);
	ZydisDecodedInstruction insn;
	unsigned len = 0;
	if (got > 0 && ZYAN_SUCCESS(ZydisDecoderDecodeInstruction(dec, NULL, buf, (size_t)got, &insn)))
		len = insn.length;
	c->addr[h] = ip;
	c->len[h] = (uint8_t)len;
	return len;
}

static uint64_t tracee_ip(pid_t pid)
{
	return (uint64_t)ptrace(PTRACE_PEEKUSER, pid, offsetof(struct user_regs_struct, rip), 0);
}

/* Single-step the stopped tracee to its exit, recording taken branches. A
 * step that stays on the same IP is a `rep` iteration, not a branch. */
static int step_to_exit(struct trace *t)
{
	ZydisDecoder dec;
	ZydisDecoderInit(&dec, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64);
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/mem", (int)t->pid);
	int memfd = open(path, O_RDONLY | O_CLOEXEC);
	struct len_cache *c = calloc(1, sizeof(*c));
	if (memfd < 0 || !c)
		return -1;
	uint64_t p = tracee_ip(t->pid);
	int status, sig = 0, rc = 0;
	for (;;) {
		unsigned len = insn_len(c, &dec, memfd, p);
		if (ptrace(PTRACE_SINGLESTEP, t->pid, 0, (void *)(long)sig) < 0 ||
		    waitpid(t->pid, &status, 0) < 0 || !WIFSTOPPED(status))
			break;
		sig = WSTOPSIG(status) == SIGTRAP ? 0 : WSTOPSIG(status);
		uint64_t q = tracee_ip(t->pid);
		t->steps++;
		if (q != p && q != p + len && push_branch(t, p, q))
			rc = -1;
		p = q;
	}
	close(memfd);
	free(c);
	return rc;
}

/* Run `fixture 200` under ptrace and collect its taken branches. */
static int trace_fixture(const struct elf_binary *b, struct trace *t)
{
	pid_t pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);
		dup2(null, 1);
		ptrace(PTRACE_TRACEME, 0, 0, 0);
		execl(b->path, b->path, "200", (char *)NULL);
		_exit(127);
	}
	int status;
	if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFSTOPPED(status))
		return -1;
	t->pid = pid;
	struct procmaps m = { 0 };
	struct core_err err = { 0 };
	int rc = core_procmaps_read(pid, &m, &err);
	if (!rc)
		rc = core_procmaps_load_bias(&m, b->dev, b->ino, b->segs[0].vaddr, b->segs[0].offset,
					&t->bias, &err);
	core_procmaps_free(&m);
	if (rc) {
		fprintf(stderr, "bias: %s\n", err.msg);
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		return -1;
	}
	return step_to_exit(t);
}

/* ---- generator: ring-buffer records from the trace ---------------------- */

#define RING_SIZE 8192u /* small, so records wrap around its end often */

struct gen {
	uint8_t ring[RING_SIZE];
	uint64_t head, tail;
	struct sample_set got;	  /* what the parser made of the ring */
	struct sample_set want;	  /* what was encoded */
	uint64_t lost_want, bad;
	uint32_t seed;
};

static void ring_put(struct gen *g, const void *src, size_t len)
{
	const uint8_t *s = src;
	for (size_t i = 0; i < len; i++)
		g->ring[(g->head + i) % RING_SIZE] = s[i];
	g->head += len;
}

/* The consumer side, as perf_lbr.c runs it, when the producer needs room. */
static void make_room(struct gen *g, size_t len)
{
	if (RING_SIZE - (g->head - g->tail) >= len)
		return;
	int rc = sample_perf_lbr_drain(g->ring, RING_SIZE, g->tail, g->head, &g->got, &g->bad);
	expect(rc == 0, "drain: %d", rc);
	g->tail = g->head;
}

static void put_header(struct gen *g, uint32_t type, uint16_t size)
{
	struct perf_event_header h = { .type = type, .misc = PERF_RECORD_MISC_USER, .size = size };
	ring_put(g, &h, sizeof(h));
}

/* Encode the `depth` branches ending at t->v[i] (newest first) as one
 * PERF_RECORD_SAMPLE of the backend's layout. */
static void put_sample(struct gen *g, const struct trace *t, size_t i, size_t depth)
{
	uint16_t size = (uint16_t)(SAMPLE_LBR_FIXED_BYTES + depth * SAMPLE_LBR_ENTRY_BYTES);
	make_room(g, size);
	uint64_t ip = t->v[i].to, nr = depth;
	uint32_t ids[2] = { (uint32_t)t->pid, (uint32_t)t->pid };
	put_header(g, PERF_RECORD_SAMPLE, size);
	ring_put(g, &ip, 8);
	ring_put(g, ids, 8);
	ring_put(g, &nr, 8);
	for (size_t k = 0; k < depth; k++) {
		struct perf_branch_entry e = { .from = t->v[i - k].from, .to = t->v[i - k].to };
		e.mispred = (k & 3) == 1;
		e.predicted = !e.mispred;
		ring_put(g, &e, sizeof(e));
	}
	/* the expected result, built independently of the parser */
	sample_set_push(&g->want, ip);
	g->want.stack_start = realloc(g->want.stack_start, (g->want.nstacks + 1) * sizeof(size_t));
	g->want.stack_start[g->want.nstacks++] = g->want.nbranches;
	g->want.branches = realloc(g->want.branches,
				   (g->want.nbranches + depth) * sizeof(*g->want.branches));
	for (size_t k = 0; k < depth; k++)
		g->want.branches[g->want.nbranches++] = t->v[i - k];
}

/* Records the parser must step over or count. */
static void put_other(struct gen *g, uint64_t lost)
{
	uint64_t w[3] = { 7, lost, 0 };
	make_room(g, 8 + 16 + 8 + 24);
	put_header(g, PERF_RECORD_LOST, 8 + 16);
	ring_put(g, w, 16);
	g->lost_want += lost;
	put_header(g, PERF_RECORD_COMM, 8 + 24); /* pid, tid, "fixture\0" + pad */
	ring_put(g, w, 24);
}

static uint32_t next_rand(uint32_t *s)
{
	*s = *s * 1103515245u + 12345u;
	return *s >> 8;
}

/* Sample the trace every 5..16 branches with stacks of 16 and 32 entries: a
 * gap never longer than the shortest stack, so every branch is in some stack
 * and what BOLT must profile does not hang on where the loader's branches
 * (which differ by a few between machines) put the sample points. */
static void generate(struct gen *g, const struct trace *t)
{
	size_t i = 40, nsamples = 0;
	g->seed = 12345;
	while (i < t->n) {
		size_t depth = nsamples % 2 ? 32 : 16;
		put_sample(g, t, i, depth);
		if (++nsamples % 50 == 0)
			put_other(g, nsamples);
		i += 5 + next_rand(&g->seed) % 12;
	}
	make_room(g, RING_SIZE); /* final drain */
}

static void check_parsed(const struct gen *g)
{
	const struct sample_set *a = &g->got, *w = &g->want;
	expect(g->bad == 0, "%llu malformed records", (unsigned long long)g->bad);
	expect(a->lost == g->lost_want, "lost %llu, want %llu", (unsigned long long)a->lost,
	       (unsigned long long)g->lost_want);
	expect(a->nstacks == w->nstacks && a->n == w->n && a->nbranches == w->nbranches,
	       "stacks %zu/%zu ips %zu/%zu branches %zu/%zu", a->nstacks, w->nstacks, a->n, w->n,
	       a->nbranches, w->nbranches);
	if (a->nstacks != w->nstacks || a->nbranches != w->nbranches)
		return;
	size_t bad_ip = 0, bad_start = 0, bad_br = 0;
	for (size_t k = 0; k < w->nstacks; k++) {
		bad_ip += a->ips[k] != w->ips[k];
		bad_start += a->stack_start[k] != w->stack_start[k];
	}
	for (size_t i = 0; i < w->nbranches; i++)
		bad_br += a->branches[i].from != w->branches[i].from ||
			  a->branches[i].to != w->branches[i].to;
	expect(!bad_ip && !bad_start && !bad_br, "mismatches: ip %zu, stack_start %zu, branch %zu",
	       bad_ip, bad_start, bad_br);
}

/* ---- parser error paths -------------------------------------------------- */

static void test_parse_errors(void)
{
	uint8_t rec[SAMPLE_LBR_FIXED_BYTES + 2 * SAMPLE_LBR_ENTRY_BYTES];
	memset(rec, 0, sizeof(rec));
	struct perf_event_header h = { PERF_RECORD_SAMPLE, 0, sizeof(rec) };
	uint64_t nr = 2;
	memcpy(rec, &h, sizeof(h));
	memcpy(rec + 24, &nr, 8);
	struct sample_set s = { 0 };
	expect(sample_perf_lbr_parse(rec, sizeof(rec), &s) == 0, "valid record");
	expect(s.nstacks == 1 && s.nbranches == 2 && s.n == 1, "one stack of two");
	nr = 3; /* more entries than the size holds */
	memcpy(rec + 24, &nr, 8);
	expect(sample_perf_lbr_parse(rec, sizeof(rec), &s) == OCOLOS_EINVAL, "nr too large");
	nr = 1; /* fewer: a layout we did not ask for (e.g. hw_idx present) */
	memcpy(rec + 24, &nr, 8);
	expect(sample_perf_lbr_parse(rec, sizeof(rec), &s) == OCOLOS_EINVAL, "nr too small");
	nr = UINT64_MAX / 8; /* overflow of 24 * nr */
	memcpy(rec + 24, &nr, 8);
	expect(sample_perf_lbr_parse(rec, sizeof(rec), &s) == OCOLOS_EINVAL, "nr overflow");
	expect(sample_perf_lbr_parse(rec, 16, &s) == OCOLOS_EINVAL, "truncated");
	h.type = PERF_RECORD_LOST;
	memcpy(rec, &h, sizeof(h));
	expect(sample_perf_lbr_parse(rec, sizeof(rec), &s) == OCOLOS_EINVAL, "not a sample");
	expect(s.nstacks == 1 && s.nbranches == 2 && s.n == 1, "failures appended nothing");
	uint8_t ring[64] = { 0 }; /* a zero-size header: stop, count one bad record */
	uint64_t bad = 0;
	expect(sample_perf_lbr_drain(ring, sizeof(ring), 0, 32, &s, &bad) == 0 && bad == 1,
	       "garbage ring: bad=%llu", (unsigned long long)bad);
	sample_set_free(&s);
}

/* ---- writer: exact records for a hand-built stack --------------------- */

static long find_func(const struct elf_binary *b, const char *name)
{
	for (size_t i = 0; i < b->nfuncs; i++)
		if (!strcmp(b->funcs[i].name, name))
			return (long)i;
	return -1;
}

static int file_has_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	for (const char *p = text; (p = strstr(p, line)); p++)
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			return 1;
	return 0;
}

static char *slurp(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return NULL;
	char *buf = calloc(1, 1 << 22);
	size_t n = buf ? fread(buf, 1, (1 << 22) - 1, f) : 0;
	(void)n;
	fclose(f);
	return buf;
}

static void add_stack(struct sample_set *s, const struct sample_branch *v, size_t n)
{
	sample_set_push(s, v[0].to);
	s->stack_start = realloc(s->stack_start, (s->nstacks + 1) * sizeof(size_t));
	s->stack_start[s->nstacks++] = s->nbranches;
	s->branches = realloc(s->branches, (s->nbranches + n) * sizeof(*v));
	memcpy(s->branches + s->nbranches, v, n * sizeof(*v));
	s->nbranches += n;
}

static void test_writer_exact(const struct elf_binary *b, const char *dir)
{
	long hi = find_func(b, "fx_hot"), li = find_func(b, "fx_leaf");
	expect(hi >= 0 && li >= 0 && b->funcs[hi].size > 0x48 && b->funcs[li].size > 5,
	       "fixture functions");
	if (hi < 0 || li < 0)
		return;
	const uint64_t bias = 0x555500000000ull, H = b->funcs[hi].addr + bias,
		       L = b->funcs[li].addr + bias, X = 0x7f0000001000ull;
	const struct sample_branch st1[] = { /* newest first */
		{ H + 0x30, L },			    /* call */
		{ 0xffffffff81000000ull, 0xffffffff81000100ull }, /* kernel: dropped */
		{ H + 0x18, H + 0x28 },			    /* jump inside fx_hot */
		{ L + 5, H + 0x10 },			    /* return from fx_leaf */
		{ H + 8, L },				    /* call */
		{ X, H },				    /* from a library */
		{ X + 0x1000, X + 0x2000 },		    /* library only: dropped */
	};
	const struct sample_branch st2[] = { { H + 4, H + 0x40 }, { H + 0x30, H + 0x10 } };
	struct sample_set s = { 0 };
	add_stack(&s, st1, 7);
	add_stack(&s, st1, 7);
	add_stack(&s, st2, 2);
	char path[512], line[128];
	snprintf(path, sizeof(path), "%s/exact.preagg", dir);
	struct infer_profile_stats st;
	struct core_err err = { 0 };
	int rc = infer_write_lbr(b, bias, &s, path, &st, &err);
	expect(rc == 0, "write: %s", err.msg);
	expect(st.in_binary == 12 && st.addresses == 11 && st.functions == 2,
	       "stats %llu %llu %u", (unsigned long long)st.in_binary,
	       (unsigned long long)st.addresses, st.functions);
	char *text = slurp(path);
	const uint64_t h = H - bias, l = L - bias;
	const struct { char k; uint64_t f, t; int c; int ext; } want[] = {
		{ 'B', h + 4, h + 0x40, 1, 0 }, { 'B', h + 8, l, 2, 0 },
		{ 'B', h + 0x18, h + 0x28, 2, 0 }, { 'B', h + 0x30, l, 2, 0 },
		{ 'B', h + 0x30, h + 0x10, 1, 0 }, { 'B', l + 5, h + 0x10, 2, 0 },
		{ 'B', 0, h, 2, 1 }, { 'F', h + 0x28, h + 0x30, 2, 0 },
		{ 'f', h + 0x10, h + 0x18, 2, 0 }, { 'f', l, l + 5, 2, 0 },
		{ 'f', h, h + 8, 2, 0 },
	};
	for (size_t i = 0; text && i < sizeof(want) / sizeof(want[0]); i++) {
		if (want[i].ext)
			snprintf(line, sizeof(line), "B X:0 %llx %d 0", (unsigned long long)want[i].t,
				 want[i].c);
		else
			snprintf(line, sizeof(line), "%c %llx %llx %d%s", want[i].k,
				 (unsigned long long)want[i].f, (unsigned long long)want[i].t,
				 want[i].c, want[i].k == 'B' ? " 0" : "");
		expect(file_has_line(text, line), "missing '%s' in:\n%s", line, text);
	}
	free(text);
	sample_set_free(&s);
	struct sample_set none = { 0 };
	add_stack(&none, st1 + 6, 1);
	expect(infer_write_lbr(b, bias, &none, path, &st, &err) == OCOLOS_ENOPROFILE,
	       "library-only stacks: ENOPROFILE");
	sample_set_free(&none);
}

/* ---- BOLT reads the profile back ---------------------------------------- */

/* Run llvm-bolt on `bin` with pre-aggregated profile `prof`, writing
 * DIR/TAG.bolt and the profile BOLT built as DIR/TAG.yaml. *log gets BOLT's
 * output followed by that YAML (caller frees). Returns BOLT's exit code. */
static int run_bolt(const char *bolt, const char *bin, const char *prof, const char *dir,
		    const char *tag, char **log)
{
	char out[512], yaml[512], logp[512];
	snprintf(out, sizeof(out), "%s/%s.bolt", dir, tag);
	snprintf(yaml, sizeof(yaml), "%s/%s.yaml", dir, tag);
	snprintf(logp, sizeof(logp), "%s/%s.log", dir, tag);
	pid_t pid = fork();
	if (pid == 0) {
		int fd = open(logp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		dup2(fd, 1);
		dup2(fd, 2);
		execl(bolt, bolt, bin, "-o", out, "--pa", "-p", prof, "-w", yaml,
		      "--reorder-blocks=ext-tsp", (char *)NULL);
		_exit(127);
	}
	int status = 0;
	waitpid(pid, &status, 0);
	*log = slurp(logp);
	char *y = slurp(yaml);
	if (*log && y) { /* one text to search: BOLT's log, then the profile it read */
		size_t a = strlen(*log);
		memcpy(*log + a, y, strnlen(y, (1 << 22) - 1 - a));
	}
	free(y);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The oracle: the same stacks as BOLT's own perf.data path sees them, one
 * `T <branch> <branch target> <fall-through end>` per entry that has a newer
 * one and `B` for the newest (DataAggregator::parseLBRSample), unaggregated,
 * external ends as "X:0". */
static void write_traces(const struct elf_binary *b, uint64_t bias, const struct sample_set *s,
			 const char *path)
{
	FILE *f = fopen(path, "w");
	for (size_t k = 0; f && k < s->nstacks; k++) {
		size_t lo = s->stack_start[k];
		size_t hi = k + 1 < s->nstacks ? s->stack_start[k + 1] : s->nbranches;
		for (size_t i = lo; i < hi; i++) {
			uint64_t a[3] = { s->branches[i].from, s->branches[i].to,
					  i > lo ? s->branches[i - 1].from : 0 };
			fputs(i > lo ? "T" : "B", f);
			for (int j = 0; j < (i > lo ? 3 : 2); j++) {
				uint64_t l = a[j] - bias;
				if (l >= b->img_lo && l < b->img_hi)
					fprintf(f, " %llx", (unsigned long long)l);
				else
					fputs(" X:0", f);
			}
			fputs(i > lo ? " 1\n" : " 1 0\n", f);
		}
	}
	if (f)
		fclose(f);
}

/* Exec count BOLT gave function `name` in its YAML profile, or -1. */
static long yaml_exec(const char *text, const char *name)
{
	char key[128];
	snprintf(key, sizeof(key), "name:            %s\n", name);
	const char *p = strstr(text, key);
	if (!p)
		return -1;
	p = strstr(p, "exec:");
	return p ? strtol(p + 5, NULL, 10) : -1;
}

/* BOLT's profile (YAML, from "functions:" on) for run `tag` in `dir`. */
static char *bolt_profile(const char *dir, const char *tag)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s.yaml", dir, tag);
	char *y = slurp(p);
	char *f = y ? strstr(y, "\nfunctions:") : NULL;
	if (f)
		memmove(y, f, strlen(f) + 1);
	return y;
}

static void test_bolt_reads(const struct elf_binary *b, const struct trace *t,
			    const struct sample_set *s, const char *bolt, const char *dir)
{
	char prof[512], oracle[512];
	snprintf(prof, sizeof(prof), "%s/fixture.preagg", dir);
	snprintf(oracle, sizeof(oracle), "%s/oracle.preagg", dir);
	struct infer_profile_stats st;
	struct core_err err = { 0 };
	int rc = infer_write_lbr(b, t->bias, s, prof, &st, &err);
	expect(rc == 0, "write: %s", err.msg);
	fprintf(stderr, "profile: %llu branches in the binary, %llu records, %u functions\n",
		(unsigned long long)st.in_binary, (unsigned long long)st.addresses, st.functions);
	char *log = NULL, *olog = NULL;
	rc = run_bolt(bolt, b->path, prof, dir, "lbr", &log);
	expect(rc == 0 && log, "llvm-bolt exit %d:\n%s", rc, log ? log : "");
	if (!log)
		return;
	expect(strstr(log, "traces mismatching disassembled function contents: 0 ("),
	       "BOLT found mismatching traces:\n%s", log);
	expect(!strstr(log, "failed to parse") && !strstr(log, "PERF2BOLT-ERROR"), "parse:\n%s", log);
	const char *hot[] = { "fx_hot", "fx_leaf", "fx_mid", "fx_tail", "fx_far", "main" };
	for (size_t i = 0; i < sizeof(hot) / sizeof(hot[0]); i++)
		expect(yaml_exec(log, hot[i]) > 0, "%s not profiled by BOLT", hot[i]);
	expect(yaml_exec(log, "fx_cold") <= 0, "fx_cold profiled");
	const char *line = strstr(log, "have non-empty execution profile");
	while (line && line > log && line[-1] != '\n')
		line--;
	fprintf(stderr, "%.*s\n", line ? (int)(strchr(line, '\n') - line) : 0, line ? line : "");
	/* BOLT's own trace processing of the same stacks must build the same profile */
	write_traces(b, t->bias, s, oracle);
	rc = run_bolt(bolt, b->path, oracle, dir, "oracle", &olog);
	expect(rc == 0, "llvm-bolt on the trace oracle: exit %d\n%s", rc, olog ? olog : "");
	char *mine = bolt_profile(dir, "lbr"), *theirs = bolt_profile(dir, "oracle");
	expect(mine && theirs && !strcmp(mine, theirs),
	       "BOLT's profile from B/F/f records differs from its profile from T traces "
	       "(diff %s/lbr.yaml %s/oracle.yaml)", dir, dir);
	free(mine);
	free(theirs);
	free(olog);
	free(log);
}

/* ---- probe ------------------------------------------------------------- */

static volatile int busy_stop;

static void *busy(void *arg)
{
	volatile unsigned long x = 0;
	while (!busy_stop)
		for (int i = 0; i < 1000; i++)
			x += (unsigned long)i % 7 ? 1 : (unsigned long)i;
	return arg;
}

static void test_probe(void)
{
	struct core_err err = { 0 };
	int rc = sample_perf_lbr_probe(getpid(), &err);
	fprintf(stderr, "probe: %d %s\n", rc, err.msg);
	if (rc == OCOLOS_ENOTSUP || rc == OCOLOS_EPERF) {
		expect(strlen(err.msg) > 20 && strstr(err.msg, "perf"), "message says why: '%s'",
		       err.msg);
		return;
	}
	expect(rc == 0, "probe: %d", rc);
	pthread_t th;
	pthread_create(&th, NULL, busy, NULL);
	struct sample_config cfg = { .backend = SAMPLE_PERF_LBR, .pid = getpid(), .hz = 1000,
				     .window_ms = 200, .exclude_tid = gettid() };
	struct sample_set s = { 0 };
	rc = sample_perf_lbr_collect(&cfg, &s, &err);
	busy_stop = 1;
	pthread_join(th, NULL);
	expect(rc == 0 && s.nstacks > 0 && s.nbranches > 0, "collect %d (%s): %zu stacks",
	       rc, err.msg, s.nstacks);
	fprintf(stderr, "collected %zu stacks, %zu branches, event %s\n", s.nstacks, s.nbranches,
		s.event);
	sample_set_free(&s);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s fixture llvm-bolt\n", argv[0]);
		return 2;
	}
	test_parse_errors();
	test_probe();
	struct elf_binary *b = NULL;
	struct core_err err = { 0 };
	if (elf_binary_open(argv[1], &b, &err)) {
		fprintf(stderr, "open %s: %s\n", argv[1], err.msg);
		return 1;
	}
	char dir[] = "/tmp/ocolos-lbr-XXXXXX";
	expect(mkdtemp(dir), "mkdtemp");
	test_writer_exact(b, dir);
	struct trace t = { 0 };
	expect(trace_fixture(b, &t) == 0, "tracing the fixture");
	fprintf(stderr, "traced %llu steps, %zu taken branches, bias %llx\n",
		(unsigned long long)t.steps, t.n, (unsigned long long)t.bias);
	struct gen *g = calloc(1, sizeof(*g));
	g->head = g->tail = 3 * RING_SIZE - 200; /* start near a wrap */
	generate(g, &t);
	fprintf(stderr, "generated %zu stacks\n", g->want.nstacks);
	check_parsed(g);
	test_bolt_reads(b, &t, &g->got, argv[2], dir);
	sample_set_free(&g->got);
	sample_set_free(&g->want);
	free(g);
	free(t.v);
	elf_binary_close(b);
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (!getenv("LBR_KEEP") && !test_failures && system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	test_done();
}
