/*
 * The free oracle (DESIGN.md): in relocation mode BOLT itself rewrites the
 * references to moved functions in the code it did not move (its output's
 * .bolt.org.text) and in data (.data.rel.ro, .data). The patches libocolos
 * computes from relocations are checked against those bytes, and every
 * difference must be explained:
 *   agree       a call/jmp rel32 or pointer slot we patch, same new bytes
 *   in-moved    a call site inside a moved function's C0 body: we patch it
 *               (threads already there should reach C1 too), BOLT does not
 *               touch code it moved away
 *   addr-taken  a RIP-relative or absolute reference to a moved function
 *               that is not a call (lea/mov of &f), deliberately left on C0
 *   kept        a pointer slot of a function whose address the program can
 *               obtain otherwise (fx_leaf: printf("%p")), deliberately left
 *               on C0 by the pointer rule (inject/plan.c)
 * Also: the profile writer's output is read back by BOLT (it reports the
 * sampled functions as profiled), and the model's moved-function map is
 * consistent with BOLT's output.
 * argv: fixture llvm-bolt
 */
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/workdir.h"
#include "elf/binary.h"
#include "elf/bolt_output.h"
#include "infer/hybrid.h"
#include "infer/profile.h"
#include "inject/inject.h"
#include "layout/layout.h"
#include "sample/sample.h"
#include "unit.h"

struct sec { uint64_t addr, size; uint8_t *bytes; };

/* The whole file, malloc'd; NULL on error. */
static uint8_t *read_file(const char *path, size_t *n)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	long len = f && fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
	if (len > 0 && fseek(f, 0, SEEK_SET) == 0 && (buf = malloc((size_t)len)) &&
	    fread(buf, 1, (size_t)len, f) != (size_t)len) {
		free(buf);
		buf = NULL;
	}
	if (f)
		fclose(f);
	*n = buf ? (size_t)len : 0;
	return buf;
}

static struct sec read_section(const char *path, const char *name)
{
	struct sec s = { 0 };
	int fd = open(path, O_RDONLY);
	elf_version(EV_CURRENT);
	Elf *e = elf_begin(fd, ELF_C_READ, NULL);
	size_t shstrndx;
	elf_getshdrstrndx(e, &shstrndx);
	Elf_Scn *scn = NULL;
	GElf_Shdr sh;
	while ((scn = elf_nextscn(e, scn))) {
		gelf_getshdr(scn, &sh);
		const char *n = elf_strptr(e, shstrndx, sh.sh_name);
		if (n && !strcmp(n, name) && sh.sh_type == SHT_PROGBITS) {
			Elf_Data *d = elf_getdata(scn, NULL);
			s.addr = sh.sh_addr;
			s.size = sh.sh_size;
			s.bytes = malloc(sh.sh_size);
			memcpy(s.bytes, d->d_buf, sh.sh_size);
		}
	}
	elf_end(e);
	close(fd);
	return s;
}

/* The value BOLT gives the 8-byte slot at `a`: in a PIE it updates the
 * R_X86_64_RELATIVE addend in .rela.dyn (the loader fills the slot); else
 * the section bytes. */
static uint64_t bolt_slot_value(const char *path, const struct sec *out, uint64_t a)
{
	uint64_t v;
	memcpy(&v, out->bytes + (a - out->addr), 8);
	int fd = open(path, O_RDONLY);
	Elf *e = elf_begin(fd, ELF_C_READ, NULL);
	Elf_Scn *scn = NULL;
	GElf_Shdr sh;
	while ((scn = elf_nextscn(e, scn))) {
		gelf_getshdr(scn, &sh);
		if (sh.sh_type != SHT_RELA || !(sh.sh_flags & SHF_ALLOC))
			continue;
		Elf_Data *d = elf_getdata(scn, NULL);
		for (size_t i = 0; i < sh.sh_size / sizeof(Elf64_Rela); i++) {
			GElf_Rela r;
			if (gelf_getrela(d, (int)i, &r) && r.r_offset == a &&
			    GELF_R_TYPE(r.r_info) == R_X86_64_RELATIVE)
				v = (uint64_t)r.r_addend;
		}
	}
	elf_end(e);
	close(fd);
	return v;
}

static const struct inject_patch *patch_covering(const struct inject_plan *p, uint64_t a)
{
	for (size_t i = 0; i < p->n; i++)
		if (a >= p->v[i].addr && a < p->v[i].addr + p->v[i].len)
			return &p->v[i];
	return NULL;
}

/* C0 function whose C1 copy is at `c1`, or -1. */
static long moved_to(const struct elf_binary *b, const struct bolt_output *o, uint64_t c1)
{
	for (size_t i = 0; i < b->nfuncs; i++)
		if (o->c1_addr[i] && o->c1_addr[i] == c1)
			return (long)i;
	return -1;
}

static int in_moved_function(const struct elf_binary *b, const struct bolt_output *o, uint64_t a)
{
	long f = elf_func_containing(b, a);
	return f >= 0 && o->c1_addr[f];
}

/* Is the 4-byte word at `a` a reference to moved function f: C0 address in
 * the input, C1 address in the output, either RIP-relative or absolute? */
static int addr_taken(const struct elf_binary *b, const struct bolt_output *o,
		      const struct sec *in, const struct sec *out, uint64_t a)
{
	for (uint64_t w = a >= 3 ? a - 3 : 0; w <= a; w++) {
		if (w < in->addr || w + 4 > in->addr + in->size)
			continue;
		int32_t ri, ro;
		memcpy(&ri, in->bytes + (w - in->addr), 4);
		memcpy(&ro, out->bytes + (w - out->addr), 4);
		/* RIP-relative: relative to the end of the field (an immediate
		 * may follow; the tests' fixture has none on such references). */
		long f = moved_to(b, o, w + 4 + (uint64_t)(int64_t)ro);
		if (f >= 0 && w + 4 + (uint64_t)(int64_t)ri == b->funcs[f].addr)
			return 1;
		f = moved_to(b, o, (uint64_t)(uint32_t)ro);
		if (f >= 0 && (uint64_t)(uint32_t)ri == b->funcs[f].addr)
			return 1;
	}
	return 0;
}

static void check_text(const struct elf_binary *b, const struct bolt_output *o,
		       const struct inject_plan *plan, const char *in_path, const char *out_path)
{
	struct sec in = read_section(in_path, ".text");
	struct sec out = read_section(out_path, ".bolt.org.text");
	expect(in.bytes && out.bytes && in.addr == out.addr && in.size == out.size,
	       "BOLT output lacks .bolt.org.text matching .text");
	if (!in.bytes || !out.bytes)
		return;
	size_t agree = 0, in_moved = 0, taken = 0, unexplained = 0;
	for (uint64_t a = in.addr; a < in.addr + in.size; a++) {
		uint8_t bi = in.bytes[a - in.addr], bo = out.bytes[a - in.addr];
		const struct inject_patch *p = patch_covering(plan, a);
		if (p && p->kind == INJECT_CALL_SITE) {
			uint8_t want = p->new_[a - p->addr];
			if (bo == want)
				agree++;
			else if (bo == bi && in_moved_function(b, o, a))
				in_moved++;
			else {
				unexplained++;
				fprintf(stderr, "call site byte 0x%llx: BOLT %02x, we %02x\n",
					(unsigned long long)a, bo, want);
			}
			continue;
		}
		if (bi == bo)
			continue;
		if (addr_taken(b, o, &in, &out, a)) {
			taken++;
			continue;
		}
		unexplained++;
		fprintf(stderr, "unexplained .text difference at 0x%llx: %02x -> %02x\n",
			(unsigned long long)a, bi, bo);
	}
	fprintf(stderr, ".text: %zu bytes agree with BOLT, %zu in moved bodies, %zu address-taking left on C0, %zu unexplained\n",
		agree, in_moved, taken, unexplained);
	expect(agree >= 4, "only %zu call-site bytes agree with BOLT's rewrite", agree);
	expect(taken >= 4, "&fx_leaf in main: %zu address-taking bytes seen", taken);
	expect(unexplained == 0, "%zu unexplained differences in .text", unexplained);
	free(in.bytes);
	free(out.bytes);
}

static void check_data(const struct elf_binary *b, const struct bolt_output *o,
		       const struct inject_plan *plan, const char *in_path, const char *out_path,
		       const char *name, size_t want_agree, size_t want_left)
{
	struct sec in = read_section(in_path, name), out = read_section(out_path, name);
	if (!in.bytes || !out.bytes)
		return;
	size_t agree = 0, kept = 0, unexplained = 0;
	for (uint64_t a = in.addr; a + 8 <= in.addr + in.size; a++) {
		const struct inject_patch *p = patch_covering(plan, a);
		if (p && p->addr == a) {
			uint64_t want;
			memcpy(&want, p->new_, 8);
			if (bolt_slot_value(out_path, &out, a) == want)
				agree++;
			else
				unexplained++;
			a += 7;
			continue;
		}
		const struct elf_ptr_slot *ks = NULL;
		for (size_t i = 0; i < b->nslots; i++)
			if (b->slots[i].addr == a && b->funcs[b->slots[i].func].addr_taken)
				ks = &b->slots[i];
		if (ks && o->c1_addr[ks->func] &&
		    bolt_slot_value(out_path, &out, a) == o->c1_addr[ks->func]) {
			kept++; /* BOLT redirected it; the pointer rule keeps C0 */
			a += 7;
			continue;
		}
		if (in.bytes[a - in.addr] == out.bytes[a - out.addr])
			continue;
		unexplained++;
		fprintf(stderr, "unexplained %s difference at 0x%llx\n", name, (unsigned long long)a);
	}
	fprintf(stderr, "%s: %zu slots agree with BOLT, %zu address-taken slots left on C0, %zu unexplained\n",
		name, agree, kept, unexplained);
	expect(unexplained == 0, "%zu unexplained differences in %s", unexplained, name);
	expect(agree == want_agree, "%s: %zu slots agree with BOLT, want %zu", name, agree, want_agree);
	expect(kept == want_left, "%s: %zu slots BOLT redirected are left on C0, want %zu", name,
	       kept, want_left);
	free(in.bytes);
	free(out.bytes);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: %s fixture llvm-bolt\n", argv[0]);
		return 2;
	}
	struct core_err err = { 0 };
	struct elf_binary *b;
	expect(elf_binary_open(argv[1], &b, &err) == 0, "%s", err.msg);
	if (unit_failures)
		unit_done();

	/* Synthetic samples: every byte of the hot functions, many times. */
	static const char *const hot[] = { "fx_hot", "fx_leaf", "fx_mid", "fx_tail", "fx_local", NULL };
	struct sample_set s = { 0 };
	for (size_t i = 0; i < b->nfuncs; i++)
		for (int k = 0; hot[k]; k++)
			if (!strcmp(b->funcs[i].name, hot[k]))
				for (uint64_t off = 0; off < b->funcs[i].size; off++)
					for (int rep = 0; rep < 20; rep++)
						sample_set_push(&s, b->funcs[i].addr + off);
	sample_set_push(&s, 0x10); /* outside the binary: dropped */

	struct api_workdir wd;
	expect(api_workdir_create(&wd, NULL, &err) == 0, "%s", err.msg);
	char profile[PATH_MAX], output[PATH_MAX], log[PATH_MAX], bolt[PATH_MAX];
	api_workdir_file(&wd, "p.preagg", profile, &err);
	api_workdir_file(&wd, "out.bolt", output, &err);
	api_workdir_file(&wd, "bolt.log", log, &err);
	struct infer_profile_stats ps;
	expect(infer_write_preagg(b, 0, &s, profile, &ps, &err) == 0, "%s", err.msg);
	expect(ps.in_binary == s.n - 1, "in_binary %llu of %zu", (unsigned long long)ps.in_binary, s.n);
	expect(ps.functions == 5, "%u functions in the profile, want 5", ps.functions);

	/* Empty profile: a named error. */
	struct sample_set none = { 0 };
	sample_set_push(&none, 0x10);
	struct core_err e2 = { 0 };
	expect(infer_write_preagg(b, 0, &none, profile, &ps, &e2) == OCOLOS_ENOPROFILE, "empty profile");
	expect(infer_write_preagg(b, 0, &s, profile, &ps, &err) == 0, "%s", err.msg);

	expect(layout_bolt_probe(argv[2], wd.path, bolt, &err) == 0, "%s", err.msg);
	uint64_t vma = ((b->img_hi + (64ull << 20)) & ~((2ull << 20) - 1)), ns;
	struct layout_request req = { .bolt_path = bolt, .binary = argv[1], .profile = profile,
		.output = output, .log_path = log, .alloc_vma = vma, .timeout_ms = 120000,
		.basic_samples = 1 };
	int rc = layout_bolt_run(&req, &ns, &err);
	expect(rc == 0, "BOLT: %s", err.msg);
	struct bolt_output *o = NULL;
	if (!rc)
		expect(elf_bolt_output_open(output, b, vma, 256ull << 20, &o, &err) == 0, "%s", err.msg);
	if (o) {
		/* BOLT read our profile: it says the 5 functions have one. */
		char line[512];
		int profiled = -1;
		FILE *f = fopen(log, "r");
		while (f && fgets(line, sizeof(line), f))
			if (strstr(line, "have non-empty execution profile"))
				sscanf(strstr(line, "BOLT-INFO: ") + 11, "%d", &profiled);
		if (f)
			fclose(f);
		expect(profiled == 5, "BOLT reports %d profiled functions, want 5", profiled);
		expect(o->moved >= 5, "%u functions moved", o->moved);
		for (size_t i = 0; i < b->nfuncs; i++)
			if (o->c1_addr[i])
				expect(o->c1_addr[i] >= vma && o->c1_addr[i] < o->hi, "%s moved outside C1",
				       b->funcs[i].name);
		/* By hand: fx_table = { fx_leaf, fx_mid, fx_tail } (read-only),
		 * fx_hook = fx_mid (writable). fx_leaf's address is taken (printf),
		 * so its slot keeps C0; fx_mid's two slots and fx_tail's move. */
		struct inject_plan plan;
		expect(inject_plan_build(b, o, 0, &plan, &err) == 0, "%s", err.msg);
		expect(plan.call_sites >= 4 && plan.ptr_slots == 3 && plan.slots_kept == 1 &&
		       plan.writable_slots == 1,
		       "plan: %u call sites, %u slots (%u writable), %u kept", plan.call_sites,
		       plan.ptr_slots, plan.writable_slots, plan.slots_kept);
		/* The slots of one function are one group, adjacent in the plan. */
		uint32_t last_group = 0;
		size_t groups = 0;
		for (size_t k = 0; k < plan.n; k++)
			if (plan.v[k].group && plan.v[k].group != last_group) {
				groups++;
				last_group = plan.v[k].group;
			}
		expect(groups == 2, "%zu slot groups, want 2 (fx_mid, fx_tail)", groups);
		check_text(b, o, &plan, argv[1], output);
		check_data(b, o, &plan, argv[1], output, ".data.rel.ro", 2, 1); /* fx_table */
		check_data(b, o, &plan, argv[1], output, ".data", 1, 0);	   /* fx_hook */
		size_t ndata = 0;
		for (size_t k = 0; k < plan.n; k++)
			ndata += plan.v[k].kind == INJECT_DATA_SLOT;
		expect(ndata == 1, "%zu INJECT_DATA_SLOT patches, want 1", ndata);
		/* opts.redirect_writable_slots (every slot, unsafe): fx_leaf's
		 * too, to the very value BOLT wrote there. */
		struct inject_plan wplan;
		expect(inject_plan_build_island(b, o, 0, 0, INJECT_PLAN_UNSAFE_SLOTS, &wplan, &err) == 0,
		       "%s", err.msg);
		expect(wplan.slots_kept == 0 && wplan.ptr_slots == plan.ptr_slots + 1,
		       "unsafe plan: %u slots, %u kept", wplan.ptr_slots, wplan.slots_kept);
		check_data(b, o, &wplan, argv[1], output, ".data", 1, 0);
		check_data(b, o, &wplan, argv[1], output, ".data.rel.ro", 3, 0);
		inject_plan_free(&wplan);
		inject_plan_free(&plan);
		elf_bolt_output_close(o);
	}
	/* BOLT 19 lacks --custom-allocation-vma; a copy of the binary whose
	 * highest PT_LOAD ends at v19 (layout_bolt_placed_copy) must make it
	 * put new code exactly there, and differ from the binary in that
	 * program header only. */
	const char *bolt19 = "/usr/lib/llvm-19/bin/llvm-bolt";
	if (access(bolt19, X_OK) == 0) {
		char placed[PATH_MAX], out19[PATH_MAX];
		api_workdir_file(&wd, "placed.elf", placed, &err);
		api_workdir_file(&wd, "out19.bolt", out19, &err);
		uint64_t v19 = vma + (16ull << 20);
		expect(layout_bolt_placed_copy(argv[1], placed, v19, &err) == 0, "%s", err.msg);
		size_t n0 = 0, n1 = 0;
		uint8_t *f0 = read_file(argv[1], &n0), *f1 = read_file(placed, &n1);
		const Elf64_Ehdr *eh = (const Elf64_Ehdr *)f0;
		size_t diff = 0, outside = 0;
		for (size_t k = 0; f0 && f1 && n0 == n1 && k < n0; k++)
			if (f0[k] != f1[k]) {
				diff++;
				outside += k < eh->e_phoff ||
					   k >= eh->e_phoff + (size_t)eh->e_phnum * sizeof(Elf64_Phdr);
			}
		expect(f0 && f1 && n0 == n1 && diff > 0 && diff <= 8 && !outside,
		       "the copy differs in %zu bytes, %zu outside the program headers", diff, outside);
		free(f0);
		free(f1);
		/* BOLT 19 has no --ba: our edge profile (what AArch64 rounds use). */
		char prof19[PATH_MAX];
		api_workdir_file(&wd, "p19.preagg", prof19, &err);
		struct hybrid_write_stats hs = { 0 };
		expect(infer_write_hybrid_flags(b, 0, &s, prof19, 0, &ps, &hs, &err) == 0, "%s", err.msg);
		struct layout_request r19 = req;
		r19.bolt_path = bolt19;
		r19.binary = placed;
		r19.output = out19;
		r19.profile = prof19;
		r19.basic_samples = 0;
		r19.self_placed = 1;
		rc = layout_bolt_run(&r19, &ns, &err);
		expect(rc == 0, "BOLT 19: %s", err.msg);
		struct bolt_output *o19 = NULL;
		if (!rc)
			expect(elf_bolt_output_open(out19, b, v19, 256ull << 20, &o19, &err) == 0, "%s",
			       err.msg);
		if (o19) {
			expect(o19->lo == v19, "BOLT 19 put new code at 0x%llx, not 0x%llx",
			       (unsigned long long)o19->lo, (unsigned long long)v19);
			expect(o19->moved >= 5, "BOLT 19 moved %u functions", o19->moved);
			elf_bolt_output_close(o19);
		}
		/* Bare samples (opts.edges BOLT) cannot reach BOLT 19 (no --ba,
		 * and its reader takes no S records): a named refusal that says
		 * what to use, not BOLT's usage error. */
		struct layout_request rba = r19;
		rba.profile = req.profile;
		rba.basic_samples = 1;
		core_err_clear(&err);
		rc = layout_bolt_run(&rba, &ns, &err);
		expect(rc == OCOLOS_ENOTSUP && strstr(err.msg, "OCOLOS_EDGES_HYBRID"),
		       "BOLT 19 with bare samples: rc %d, %s", rc, err.msg);
	} else {
		fprintf(stderr, "no %s: the placed copy is not checked against it\n", bolt19);
	}
	api_workdir_remove(&wd);
	sample_set_free(&s);
	sample_set_free(&none);
	elf_binary_close(b);
	unit_done();
}
