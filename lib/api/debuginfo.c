/*
 * Code versions as profilers and debuggers see them.
 *
 * A version (C1, C2, ...) is anonymous executable memory: perf shows its
 * samples as "[JIT] tid N 0x55..." and gdb its frames as "?? ()". The two
 * interfaces JIT compilers use fix that, and nothing else is needed:
 *
 *  - The perf map, /tmp/perf-PID.map (tools/perf/Documentation/
 *    jit-interface.txt): one line "START SIZE name" per function, in hex,
 *    which perf report/script read when they resolve a sample in an
 *    anonymous mapping of process PID. Written for every target, in-process
 *    or by pid, by whoever runs the round. perf reads the file at report
 *    time and, among lines that cover one address, picks any (its symbol
 *    tree keeps them all, checked with perf 6.1): so the lines a version
 *    adds replace every older line that overlaps its code — those of a
 *    retired version whose addresses it reuses — and "the newest line for
 *    an address" holds. Lines of retired versions stay otherwise: samples
 *    taken while those ran keep their names. The file is rewritten through
 *    a temporary file and rename(2), never in place, so a perf reading it
 *    meanwhile sees the old or the new file, never half of one.
 *
 *    perf 6.1 reads the map only for anonymous executable memory, and a
 *    version is a memfd mapping ("/memfd:ocolos-cN (deleted)"), which it
 *    takes for a file it cannot open: the map names nothing there. So:
 *
 *  - perf's jitdump (tools/perf/Documentation/jitdump-specification.txt),
 *    when the environment of the process running the round asks for it
 *    (OCOLOS_JITDUMP=DIR): DIR/jit-PID.dump gets a header and, per version,
 *    one code-load record per function with its bytes, and the target maps
 *    the file's first page executable, never writable (a pid target does
 *    so itself, injected) — the target's mmap event, which perf records
 *    (or synthesizes when it attaches later), is the marker `perf inject
 *    --jit` looks for. A later round, by this or another agent, finds the
 *    marker in /proc/PID/maps and appends. inject then writes one small ELF per record and
 *    points the samples taken after the record's time (CLOCK_MONOTONIC:
 *    `perf record -k mono`) at it, whatever the mapping is. Opt-in: the
 *    file holds a copy of every version's code and outlives the process.
 *
 *  - GDB's JIT interface (gdb/doc "JIT Compilation Interface"): a
 *    descriptor with a list of in-memory ELF objects and a function GDB
 *    sets a breakpoint on, both found by their names. Only the calling
 *    process can have it (it lives in the process's memory), so only self
 *    targets get it; for a process optimized by pid, share/ocolos/gdb/
 *    ocolos_gdb.py reads the perf map instead. The object of a version
 *    (elf/symfile.c) has its symbols and, when the version's unwind tables
 *    were registered, a copy of them, so gdb unwinds through its frames.
 *    It is removed when the version is unmapped.
 *
 * The JIT descriptor is the one piece of process-wide mutable state here:
 * the protocol fixes its name and shape, one per loaded object. Its list is
 * changed under `jit_lock` (GDB reads it only while the process is stopped
 * at the breakpoint or attached).
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/debuginfo.h"
#include "core/procmaps.h"
#include "core/util.h"
#include "proc/proc.h"
#include "elf/symfile.h"

/* ---- GDB's JIT interface (names and layout fixed by gdb/jit.h) ---- */

enum { JIT_NOACTION = 0, JIT_REGISTER_FN = 1, JIT_UNREGISTER_FN = 2 };

struct jit_code_entry {
	struct jit_code_entry *next_entry, *prev_entry;
	const char *symfile_addr;
	uint64_t symfile_size;
};

struct jit_descriptor {
	uint32_t version;	/* 1 */
	uint32_t action_flag;	/* JIT_*: what relevant_entry is about */
	struct jit_code_entry *relevant_entry;
	struct jit_code_entry *first_entry;
};

/* Our entry: GDB's fields first, then which version it describes. */
struct dbg_entry {
	struct jit_code_entry e;
	uint64_t lo;		/* the version's code start */
	size_t len;
};

void api_jit_register_code(void);
extern struct jit_descriptor api_jit_descriptor;

/* GDB stops here to read relevant_entry. Must stay a real call (noinline,
 * and the asm keeps the compiler from dropping or merging the empty body). */
__attribute__((noinline, used)) void api_jit_register_code(void)
{
	__asm__ volatile("" ::: "memory");
}

struct jit_descriptor api_jit_descriptor = { 1, JIT_NOACTION, NULL, NULL };

/* The names GDB looks for. The library itself always uses its own copies
 * (hidden names), so a program that defines the same names (it embeds an
 * LLVM JIT, say) keeps its own list: GDB reads one descriptor per loaded
 * object. The shared library exports them (libocolos.map), so they are
 * found even in a stripped libocolos.so; in the static archive they are
 * hidden like every internal name and made local, and GDB finds them in
 * the program's symbol table (which a program libocolos optimizes keeps). */
#ifdef OCOLOS_SHARED_BUILD
#define JIT_VISIBILITY "default"
#else
#define JIT_VISIBILITY "hidden"
#endif
extern void __jit_debug_register_code(void)
	__attribute__((alias("api_jit_register_code"), visibility(JIT_VISIBILITY)));
extern struct jit_descriptor __jit_debug_descriptor
	__attribute__((alias("api_jit_descriptor"), visibility(JIT_VISIBILITY)));

static pthread_mutex_t jit_lock = PTHREAD_MUTEX_INITIALIZER;

static void jit_notify(struct jit_code_entry *e, uint32_t action)
{
	api_jit_descriptor.relevant_entry = e;
	api_jit_descriptor.action_flag = action;
	api_jit_register_code();
	api_jit_descriptor.action_flag = JIT_NOACTION;
	api_jit_descriptor.relevant_entry = NULL;
}

/* Length of the terminated .eh_frame registered at `at` (unwind.c built
 * it, zero terminator included), not reading past `end`; 0 if malformed. */
static size_t eh_frame_len(uint64_t at, uint64_t end)
{
	uint64_t p = at;
	while (p + 4 <= end) {
		uint32_t len;
		memcpy(&len, (const void *)(uintptr_t)p, 4);
		if (len == 0)
			return (size_t)(p + 4 - at);
		if (len == 0xffffffffu || len > end - p - 4)
			return 0;
		p += 4 + len;
	}
	return 0;
}

/* Hand GDB the object `d` describes, known by its code start d->text_addr.
 * 0 or -1 (out of memory). */
static int jit_add(const struct elf_symfile_desc *d)
{
	struct dbg_entry *de = calloc(1, sizeof(*de));
	uint8_t *img = NULL;
	size_t len = 0;
	struct core_err err = { 0 };
	if (!de || elf_symfile_build(d, &img, &len, &err)) {
		free(de);
		return -1;
	}
	de->e.symfile_addr = (const char *)img;
	de->e.symfile_size = len;
	de->lo = d->text_addr;
	de->len = len;
	pthread_mutex_lock(&jit_lock);
	de->e.next_entry = api_jit_descriptor.first_entry;
	if (de->e.next_entry)
		de->e.next_entry->prev_entry = &de->e;
	api_jit_descriptor.first_entry = &de->e;
	jit_notify(&de->e, JIT_REGISTER_FN);
	pthread_mutex_unlock(&jit_lock);
	return 0;
}

static void jit_unregister(uint64_t lo);

/* The slot stubs as one more object, replaced every round (stubs are only
 * ever added; the area is never unmapped). Named "f [ocolos stub]", as in
 * the perf map: a stub is not the function, and `break f` must not stop
 * in it too. */
static int jit_stubs(struct ocolos_ctx *ctx)
{
	const struct inject_stubs *st = &ctx->state->stubs;
	if (!st->res.size || !st->at)
		return 0;
	struct elf_code_syms syms = { 0 };
	unsigned stub = ctx->bin->machine == EM_AARCH64 ? 16 : 8;
	int rc = 0;
	for (size_t f = 0; !rc && f < st->nfuncs && f < ctx->bin->nfuncs; f++) {
		char name[512];
		snprintf(name, sizeof(name), "%s [ocolos stub]", ctx->bin->funcs[f].name);
		if (st->at[f])
			rc = elf_code_syms_add(&syms, st->at[f], stub, name);
	}
	struct elf_symfile_desc d = { .machine = ctx->bin->machine, .text_addr = st->res.addr,
		.text_size = st->res.size, .syms = &syms };
	jit_unregister(st->res.addr);
	if (!rc)
		rc = jit_add(&d);
	elf_code_syms_free(&syms);
	return rc;
}

static void jit_register(struct ocolos_ctx *ctx, const struct api_version *v,
			 const struct elf_code_syms *syms, uint64_t bias)
{
	struct elf_symfile_desc d = { .machine = ctx->bin->machine, .text_addr = v->lo,
		.text_size = v->hi - v->lo, .syms = syms, .bias = bias };
	size_t eh_len = v->unwind ? eh_frame_len(v->unwind, v->res.addr + v->res.size) : 0;
	if (eh_len) {
		d.eh_frame = (const uint8_t *)(uintptr_t)v->unwind;
		d.eh_len = eh_len;
		d.eh_addr = v->unwind;
	}
	if (jit_add(&d) || jit_stubs(ctx)) {
		core_logf(&ctx->log, OCOLOS_LOG_WARN, "C%u is not registered with GDB: out of memory",
			  v->gen);
		return;
	}
	core_logf(&ctx->log, OCOLOS_LOG_DEBUG, "C%u registered with GDB's JIT interface: %zu "
		  "symbols%s", v->gen, syms->n, eh_len ? ", unwind tables" : "");
}

static void jit_unregister(uint64_t lo)
{
	pthread_mutex_lock(&jit_lock);
	struct jit_code_entry *e = api_jit_descriptor.first_entry;
	while (e && ((struct dbg_entry *)e)->lo != lo)
		e = e->next_entry;
	if (e) {
		if (e->prev_entry)
			e->prev_entry->next_entry = e->next_entry;
		else
			api_jit_descriptor.first_entry = e->next_entry;
		if (e->next_entry)
			e->next_entry->prev_entry = e->prev_entry;
		jit_notify(e, JIT_UNREGISTER_FN);
	}
	pthread_mutex_unlock(&jit_lock);
	if (e) {
		struct dbg_entry *de = (struct dbg_entry *)e;
		core_free_clear((void *)de->e.symfile_addr, de->len);
		core_free_clear(de, sizeof(*de));
	}
}

/* ---- the perf map ---- */

struct text {
	char *s;
	size_t len, cap;
};

/* Room for `need` more bytes at t->s + t->len. Through core_grow (a full
 * buffer: n == cap), whose blocks left behind are cleared: a jitdump
 * buffer holds a version's addresses and code, which must not pin it when
 * it retires (util.c). */
static int text_reserve(struct text *t, size_t need)
{
	while (t->cap - t->len < need)
		if (core_grow((void **)&t->s, &t->cap, t->cap, 1))
			return -1;
	return 0;
}

static void text_free(struct text *t)
{
	core_free_clear(t->s, t->cap);
}

static int text_add(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int text_add(struct text *t, const char *fmt, ...)
{
	for (;;) {
		va_list ap;
		va_start(ap, fmt);
		int n = vsnprintf(t->s ? t->s + t->len : NULL, t->cap - t->len, fmt, ap);
		va_end(ap);
		if (n < 0)
			return -1;
		if ((size_t)n < t->cap - t->len) {
			t->len += (size_t)n;
			return 0;
		}
		if (text_reserve(t, (size_t)n + 1))
			return -1;
	}
}

/* Does the map line at `line` cover part of one of the spans? */
static int overlaps(const char *line, const uint64_t (*spans)[2], size_t n)
{
	unsigned long long start, size;
	if (sscanf(line, "%llx %llx", &start, &size) != 2)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (start < spans[i][1] && start + (size ? size : 1) > spans[i][0])
			return 1;
	return 0;
}

/* The current map's lines that no span covers (none if there is no map). */
static int keep_old_lines(int fd, const uint64_t (*spans)[2], size_t n, struct text *out)
{
	struct stat st;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode))
		return -1;
	FILE *f = fdopen(dup(fd), "r");
	if (!f)
		return -1;
	char *line = NULL;
	size_t cap = 0;
	ssize_t l;
	int rc = 0;
	while (!rc && (l = getline(&line, &cap, f)) > 0)
		if (!overlaps(line, spans, n))
			rc = text_add(out, "%s%s", line, line[l - 1] == '\n' ? "" : "\n");
	free(line);
	fclose(f);
	return rc;
}

static int write_all(int fd, const char *s, size_t len)
{
	while (len) {
		ssize_t w = write(fd, s, len);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		s += w;
		len -= (size_t)w;
	}
	return 0;
}

/* Replace /tmp/perf-PID.map by its lines outside `spans` plus `add`. The
 * file belongs to the target's owner when we may give it away (an agent
 * running as root), so that user can read and remove it. */
static int perfmap_update(pid_t pid, const uint64_t (*spans)[2], size_t nspans,
			  const struct text *add, char *path, size_t pathsz)
{
	snprintf(path, pathsz, "/tmp/perf-%d.map", (int)pid);
	struct text all = { 0 };
	int old = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (old >= 0) {
		int bad = keep_old_lines(old, spans, nspans, &all);
		close(old);
		if (bad) {
			text_free(&all);
			errno = EINVAL;
			return -1;
		}
	} else if (errno != ENOENT) {
		return -1;
	}
	char tmp[PATH_MAX];
	snprintf(tmp, sizeof(tmp), "%s.XXXXXX", path);
	int fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		text_free(&all);
		return -1;
	}
	struct stat ps;
	char proc[32];
	snprintf(proc, sizeof(proc), "/proc/%d", (int)pid);
	int rc = write_all(fd, all.s ? all.s : "", all.len) || write_all(fd, add->s, add->len) ||
		 fchmod(fd, 0644);
	if (!rc && geteuid() == 0 && !stat(proc, &ps) && ps.st_uid != 0 &&
	    fchown(fd, ps.st_uid, ps.st_gid))
		rc = -1;
	int e = errno;
	if (close(fd) || rc || rename(tmp, path)) {
		e = e ? e : errno;
		unlink(tmp);
		text_free(&all);
		errno = e;
		return -1;
	}
	text_free(&all);
	return 0;
}

/* One piece of code a version publishes, at its run-time address. */
struct pub_sym {
	uint64_t addr, size;	/* size >= 1 */
	const char *name;	/* the function's */
	const char *tag;	/* "C<gen>" or "stub": "name [ocolos tag]" */
	int stub;		/* a slot stub, outside the version */
};

/* fn for each symbol of version v inside [v->lo, v->hi), then for each slot
 * stub, until fn returns nonzero (returned). The perf map and the jitdump
 * both go through here, so that they name the same code the same way. */
static int for_each_published(struct ocolos_ctx *ctx, const struct api_version *v,
			      const struct elf_code_syms *syms, uint64_t bias,
			      int (*fn)(void *arg, const struct pub_sym *p), void *arg)
{
	char gen[16];
	snprintf(gen, sizeof(gen), "C%u", v->gen);
	for (size_t i = 0; i < syms->n; i++) {
		uint64_t a = syms->v[i].addr + bias, size = syms->v[i].size;
		if (a < v->lo || a >= v->hi)
			continue;
		if (!size) /* an asm label: up to the next symbol */
			size = (i + 1 < syms->n ? syms->v[i + 1].addr + bias : v->hi) - a;
		struct pub_sym p = { a, size ? size : 1, syms->strs + syms->v[i].name, gen, 0 };
		int rc = fn(arg, &p);
		if (rc)
			return rc;
	}
	/* The slot stubs (inject/stubs.c): a jump each, named after the
	 * function it leads to; rewritten every round with the area. */
	const struct inject_stubs *st = &ctx->state->stubs;
	unsigned stub = ctx->bin->machine == EM_AARCH64 ? 16 : 8;
	for (size_t f = 0; st->at && f < st->nfuncs && f < ctx->bin->nfuncs; f++) {
		if (!st->at[f])
			continue;
		struct pub_sym p = { st->at[f], stub, ctx->bin->funcs[f].name, "stub", 1 };
		int rc = fn(arg, &p);
		if (rc)
			return rc;
	}
	return 0;
}

static int perfmap_line(void *arg, const struct pub_sym *p)
{
	return text_add(arg, "%" PRIx64 " %" PRIx64 " %s [ocolos %s]\n", p->addr, p->size,
			p->name, p->tag);
}

static void perfmap_publish(struct ocolos_ctx *ctx, const struct api_version *v,
			    const struct elf_code_syms *syms, uint64_t bias)
{
	const struct inject_stubs *st = &ctx->state->stubs;
	uint64_t spans[2][2] = { { v->lo, v->hi }, { st->res.addr, st->res.addr + st->res.size } };
	struct text t = { 0 };
	char path[64];
	if (for_each_published(ctx, v, syms, bias, perfmap_line, &t)) {
		core_logf(&ctx->log, OCOLOS_LOG_WARN, "no perf map for C%u: out of memory", v->gen);
	} else if (perfmap_update(ctx->pid, (const uint64_t (*)[2])spans, st->res.size ? 2 : 1,
				  &t, path, sizeof(path))) {
		core_logf(&ctx->log, OCOLOS_LOG_WARN,
			  "cannot write the perf map %s (%s): perf will show C%u's samples as [JIT] "
			  "addresses; make /tmp writable for this user, or remove a %s left by "
			  "another user", path, strerror(errno), v->gen, path);
	} else {
		core_logf(&ctx->log, OCOLOS_LOG_DEBUG, "perf map %s: %zu functions of C%u", path,
			  syms->n, v->gen);
	}
	text_free(&t);
}

/* ---- perf's jitdump ---- */

enum { JITDUMP_MAGIC = 0x4A695444, JITDUMP_VERSION = 1, JIT_CODE_LOAD = 0 };

struct jitdump_header {
	uint32_t magic, version, total_size, elf_mach, pad1, pid;
	uint64_t timestamp, flags;
};

struct jitdump_code_load {
	uint32_t id, total_size;
	uint64_t timestamp;	/* core_now_ns(): CLOCK_MONOTONIC, perf's `-k mono` */
	uint32_t pid, tid;
	uint64_t vma, code_addr, code_size, code_index;
	/* then the name, NUL-terminated, and code_size bytes of code */
};

/* Does the target map `path` (the marker of a dump it already has)? */
static int target_maps(pid_t pid, const char *path)
{
	struct procmaps m = { 0 };
	struct core_err ignore = { 0 };
	if (core_procmaps_read(pid, &m, &ignore))
		return 0;
	int found = 0;
	for (size_t i = 0; i < m.n && !found; i++)
		found = !strcmp(m.v[i].path, path);
	core_procmaps_free(&m);
	return found;
}

/* The dump of ctx's target, ready to append to: the one the target maps
 * already (an earlier round, maybe by another agent), or a new one — a
 * header, then the target maps it. fd or -1 (*err says why). */
static int jitdump_open(struct ocolos_ctx *ctx, const char *path, struct core_err *err)
{
	if (target_maps(ctx->pid, path)) {
		int fd = open(path, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			core_errf(err, OCOLOS_EIO, "%s", strerror(errno));
		return fd;
	}
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0) {
		core_errf(err, OCOLOS_EIO, "%s", strerror(errno));
		return -1;
	}
	struct stat ps;
	char proc[32];
	snprintf(proc, sizeof(proc), "/proc/%d", (int)ctx->pid);
	struct jitdump_header h = { .magic = JITDUMP_MAGIC, .version = JITDUMP_VERSION,
		.total_size = sizeof(h), .elf_mach = ctx->bin->machine, .pid = (uint32_t)ctx->pid,
		.timestamp = core_now_ns() };
	if (write_all(fd, (const char *)&h, sizeof(h)) || fchmod(fd, 0644)) {
		core_errf(err, OCOLOS_EIO, "%s", strerror(errno));
	} else if (geteuid() == 0 && !stat(proc, &ps) && ps.st_uid != 0 &&
		   fchown(fd, ps.st_uid, ps.st_gid)) { /* as the perf map: the target's owner's */
		core_errf(err, OCOLOS_EIO, "%s", strerror(errno));
	} else if (!ctx->target.ops->map_marker(&ctx->target, path, err)) {
		return fd;
	}
	close(fd);
	return -1;
}

static int jitdump_record(struct ocolos_ctx *ctx, struct text *t, uint64_t addr, uint64_t size,
			  const char *name, uint64_t index)
{
	size_t nlen = strlen(name) + 1;
	struct jitdump_code_load r = { .id = JIT_CODE_LOAD,
		.total_size = (uint32_t)(sizeof(r) + nlen + size), .timestamp = core_now_ns(),
		.pid = (uint32_t)ctx->pid, .tid = (uint32_t)ctx->pid, .vma = addr,
		.code_addr = addr, .code_size = size, .code_index = index };
	if (text_reserve(t, sizeof(r) + nlen + size))
		return -1;
	memcpy(t->s + t->len, &r, sizeof(r));
	memcpy(t->s + t->len + sizeof(r), name, nlen);
	/* the code as the target has it mapped (in-process too: /proc/self/mem) */
	if (proc_mem_read(ctx->target.memfd, addr, t->s + t->len + sizeof(r) + nlen, size))
		return -1;
	t->len += sizeof(r) + nlen + size;
	return 0;
}

struct jitdump_walk {
	struct ocolos_ctx *ctx;
	const struct api_version *v;
	struct text t;
	uint64_t index;
	size_t nsyms;		/* the version's, stubs not counted */
};

static int jitdump_sym(void *arg, const struct pub_sym *p)
{
	struct jitdump_walk *w = arg;
	uint64_t size = p->size;
	if (!p->stub) {
		/* the record carries the code itself: never past the version's end */
		if (size > w->v->hi - p->addr)
			size = w->v->hi - p->addr;
		w->nsyms++;
	}
	char name[512];
	snprintf(name, sizeof(name), "%s [ocolos %s]", p->name, p->tag);
	return jitdump_record(w->ctx, &w->t, p->addr, size, name, w->index++);
}

static void jitdump_publish(struct ocolos_ctx *ctx, const struct api_version *v,
			    const struct elf_code_syms *syms, uint64_t bias)
{
	const char *dir = getenv("OCOLOS_JITDUMP");
	if (!dir || !*dir)
		return;
	char real[PATH_MAX], path[PATH_MAX + 32];
	struct core_err err = { 0 };
	int fd = -1;
	if (!realpath(dir, real)) {
		snprintf(path, sizeof(path), "%s", dir);
		core_errf(&err, OCOLOS_EIO, "%s", strerror(errno));
	} else {
		/* /proc/PID/maps shows the canonical path, which is how a later
		 * round finds the dump the target maps */
		snprintf(path, sizeof(path), "%s/jit-%d.dump", real, (int)ctx->pid);
		fd = jitdump_open(ctx, path, &err);
	}
	if (fd < 0) {
		core_logf(&ctx->log, OCOLOS_LOG_WARN, "no perf jitdump for C%u: %s: %s (OCOLOS_JITDUMP "
			  "must name a directory this process may write and the target may read)",
			  v->gen, path, err.msg);
		return;
	}
	/* code_index only has to be unique per dump: the version's number
	 * leaves room for 2^32 records per version */
	struct jitdump_walk w = { .ctx = ctx, .v = v, .index = (uint64_t)v->gen << 32 };
	int rc = for_each_published(ctx, v, syms, bias, jitdump_sym, &w);
	if (!rc)
		rc = write_all(fd, w.t.s ? w.t.s : "", w.t.len);
	int e = errno;
	close(fd);
	if (rc)
		core_logf(&ctx->log, OCOLOS_LOG_WARN, "perf jitdump %s lacks C%u: %s", path, v->gen,
			  strerror(e));
	else
		core_logf(&ctx->log, OCOLOS_LOG_DEBUG, "perf jitdump %s: %zu functions of C%u", path,
			  w.nsyms, v->gen);
	text_free(&w.t);
}

void api_debuginfo_publish(struct ocolos_ctx *ctx, const struct api_version *v,
			   const struct bolt_output *out, uint64_t bias)
{
	struct elf_code_syms syms;
	struct core_err err = { 0 };
	if (elf_code_syms_from_bolt(out, &syms, &err)) {
		core_logf(&ctx->log, OCOLOS_LOG_WARN, "C%u's symbols are not published: %s", v->gen,
			  err.msg);
	} else {
		perfmap_publish(ctx, v, &syms, bias);
		jitdump_publish(ctx, v, &syms, bias);
		if (ctx->self)
			jit_register(ctx, v, &syms, bias);
	}
	elf_code_syms_free(&syms);
}

void api_debuginfo_forget(struct ocolos_ctx *ctx, const struct api_version *v)
{
	if (ctx->self && v->lo)
		jit_unregister(v->lo);
}
