/*
 * The counts of an instrumented run, taken out of the run: counts.h says
 * why. Responsible for: finding the counters in an instrumented copy, and
 * fixing a replay's profile. Not responsible for: writing or replaying the
 * counters (the preload), running the replay and merging (ocolos_bam.c).
 *
 * The copy is read with libelf directly rather than through lib/elf: that
 * model disassembles the whole binary, and an instrumented cc1 is 166 MB;
 * here two symbols, eight bytes and the dynamic section are enough.
 */
#include "bam/counts.h"

#include <elf.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The bytes of `len` at link-time address `addr`, from the section that
 * holds them. */
static int read_at(Elf *e, uint64_t addr, unsigned char *buf, size_t len)
{
	for (Elf_Scn *s = NULL; (s = elf_nextscn(e, s));) {
		GElf_Shdr sh;
		if (!gelf_getshdr(s, &sh) || sh.sh_type != SHT_PROGBITS || addr < sh.sh_addr ||
		    addr + len > sh.sh_addr + sh.sh_size)
			continue;
		Elf_Data *d = elf_getdata(s, NULL);
		if (!d || !d->d_buf || addr - sh.sh_addr + len > d->d_size)
			return -1;
		memcpy(buf, (const unsigned char *)d->d_buf + (addr - sh.sh_addr), len);
		return 0;
	}
	return -1;
}

/* The address a getter returns: `lea disp(%rip),%rax; ret` (48 8d 05) or
 * `mov disp(%rip),%rax|%eax; ret` (48 8b 05, 8b 05), as BOLT 22 emits them. */
static int getter_target(Elf *e, uint64_t at, int lea, uint64_t *target)
{
	unsigned char b[8];
	if (read_at(e, at, b, 7))
		return -1;
	size_t op = b[0] == 0x48;
	if (op && read_at(e, at, b, 8))
		return -1;
	if (b[op] != (lea ? 0x8d : 0x8b) || b[op + 1] != 0x05 || (lea && !op) || b[op + 6] != 0xc3)
		return -1;
	int32_t disp;
	memcpy(&disp, b + op + 2, sizeof(disp));
	*target = at + op + 6 + (uint64_t)(int64_t)disp;
	return 0;
}

/* Does the copy have a DT_FINI (BOLT's dump, which the replay calls)? */
static int has_fini(Elf *e)
{
	for (Elf_Scn *s = NULL; (s = elf_nextscn(e, s));) {
		GElf_Shdr sh;
		if (!gelf_getshdr(s, &sh) || sh.sh_type != SHT_DYNAMIC || !sh.sh_entsize)
			continue;
		Elf_Data *d = elf_getdata(s, NULL);
		for (size_t i = 0; d && i < d->d_size / sh.sh_entsize; i++) {
			GElf_Dyn dyn;
			if (gelf_getdyn(d, (int)i, &dyn) && dyn.d_tag == DT_FINI && dyn.d_un.d_ptr)
				return 1;
		}
	}
	return 0;
}

int bam_counters_locate(const char *copy, uint64_t *locations, uint64_t *num)
{
	int fd = open(copy, O_RDONLY | O_CLOEXEC), rc = -1;
	if (fd < 0)
		return -1;
	elf_version(EV_CURRENT);
	Elf *e = elf_begin(fd, ELF_C_READ, NULL);
	GElf_Ehdr eh;
	uint64_t loc_getter = 0, num_getter = 0, loc_sym = 0, num_sym = 0;
	if (!e || !gelf_getehdr(e, &eh) || eh.e_machine != EM_X86_64 || !has_fini(e))
		goto out;
	for (Elf_Scn *s = NULL; (s = elf_nextscn(e, s));) {
		GElf_Shdr sh;
		if (!gelf_getshdr(s, &sh) || sh.sh_type != SHT_SYMTAB || !sh.sh_entsize)
			continue;
		Elf_Data *d = elf_getdata(s, NULL);
		size_t n = d ? d->d_size / sh.sh_entsize : 0;
		for (size_t i = 0; i < n; i++) {
			GElf_Sym sym;
			const char *name;
			if (!gelf_getsym(d, (int)i, &sym) || !sym.st_value ||
			    !(name = elf_strptr(e, sh.sh_link, sym.st_name)) || strncmp(name, "__bolt_", 7))
				continue;
			if (!strcmp(name, "__bolt_instr_locations_getter"))
				loc_getter = sym.st_value;
			else if (!strcmp(name, "__bolt_num_counters_getter"))
				num_getter = sym.st_value;
			else if (!strcmp(name, "__bolt_instr_locations"))
				loc_sym = sym.st_value;
			else if (!strcmp(name, "__bolt_num_counters"))
				num_sym = sym.st_value;
		}
	}
	/* The data symbols where a BOLT writes them; else the getters. */
	if (loc_sym && num_sym) {
		*locations = loc_sym;
		*num = num_sym;
		rc = 0;
	} else if (loc_getter && num_getter && !getter_target(e, loc_getter, 1, locations) &&
		   !getter_target(e, num_getter, 0, num)) {
		rc = 0;
	}
out:
	if (e)
		elf_end(e);
	close(fd);
	return rc;
}

/* ---- fixing the replay's [unknown] callers --------------------------------- */

struct callee {
	char *key; /* "<name> <offset>" of a call target */
	unsigned long long calls;
};

static int cmp_callee(const void *a, const void *b)
{
	return strcmp(((const struct callee *)a)->key, ((const struct callee *)b)->key);
}

/* A line of BOLT's fdata split in its 8 fields (in place): "<is_sym>
 * <name> <off> <is_sym> <name> <off> <mispreds> <count>". */
static int fields(char *line, char *f[8])
{
	int n = 0;
	for (char *save = NULL, *t = strtok_r(line, " \n", &save); t; t = strtok_r(NULL, " \n", &save))
		if (n < 8)
			f[n++] = t;
		else
			return -1;
	return n == 8 ? 0 : -1;
}

int bam_counts_correct(const char *replay_fdata, const char *run_fdata, const char *out)
{
	FILE *run = fopen(run_fdata, "re"), *rep = fopen(replay_fdata, "re"), *o = NULL;
	struct callee *c = NULL;
	size_t n = 0, cap = 0, lcap = 0, ccap = 0;
	char *line = NULL, *copy = NULL, *f[8];
	int rc = -1;
	ssize_t len;
	if (!rep)
		goto out;
	/* The run's file: the calls into each function it holds (the indirect
	 * calls, and those of the exit path); a branch within a function is
	 * not one. */
	while (run && (len = getline(&line, &lcap, run)) > 0) {
		if (fields(line, f) || strcmp(f[3], "1") || !strcmp(f[1], f[4]))
			continue;
		if (n == cap) {
			struct callee *nc = realloc(c, (cap = cap ? 2 * cap : 256) * sizeof(*c));
			if (!nc)
				goto out;
			c = nc;
		}
		if (asprintf(&c[n].key, "%s %s", f[4], f[5]) < 0)
			goto out;
		c[n++].calls = strtoull(f[7], NULL, 10);
	}
	if (n)
		qsort(c, n, sizeof(*c), cmp_callee);
	if (!(o = fopen(out, "we")))
		goto out;
	while ((len = getline(&line, &lcap, rep)) > 0) {
		if ((size_t)len + 1 > ccap) {
			char *nc = realloc(copy, ccap = (size_t)len + 1);
			if (!nc)
				goto out;
			copy = nc;
		}
		memcpy(copy, line, (size_t)len + 1);
		if (fields(copy, f)) {
			fputs(line, o);
			continue;
		}
		/* A call to an unknown target: only an indirect call leaves the
		 * binary so, and the replay's are its own start-up's (_start into
		 * libc): the run's file has the run's. */
		if (!strcmp(f[0], "1") && !strcmp(f[3], "0") && !strcmp(f[4], "[unknown]"))
			continue;
		if (strcmp(f[0], "0") || strcmp(f[1], "[unknown]") || strcmp(f[3], "1")) {
			fputs(line, o);
			continue;
		}
		char *key;
		if (asprintf(&key, "%s %s", f[4], f[5]) < 0)
			goto out;
		unsigned long long count = strtoull(f[7], NULL, 10), in_run = 0;
		struct callee k = { key, 0 };
		const struct callee *hit = n ? bsearch(&k, c, n, sizeof(*c), cmp_callee) : NULL;
		/* Several lines may share a callee (one per call site): sum them. */
		if (hit) {
			size_t lo = (size_t)(hit - c), hi = lo;
			while (lo > 0 && !strcmp(c[lo - 1].key, key))
				lo--;
			while (hi + 1 < n && !strcmp(c[hi + 1].key, key))
				hi++;
			for (size_t i = lo; i <= hi; i++)
				in_run += c[i].calls;
		}
		free(key);
		if (count > in_run)
			fprintf(o, "%s %s %s %s %s %s %s %llu\n", f[0], f[1], f[2], f[3], f[4], f[5], f[6],
				count - in_run);
	}
	rc = ferror(rep) ? -1 : 0;
out:
	if (o && fclose(o))
		rc = -1;
	if (rep)
		fclose(rep);
	if (run)
		fclose(run);
	for (size_t i = 0; i < n; i++)
		free(c[i].key);
	free(c);
	free(line);
	free(copy);
	return rc;
}
