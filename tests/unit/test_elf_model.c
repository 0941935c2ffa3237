/*
 * ELF model: functions, call sites and pointer slots of the fixture, and
 * the named refusals (no relocations, stripped, not ELF).
 * argv: fixture fixture-norelocs fixture-stripped cxx-program (the PLT
 * entries of functions that never return)
 */
#include <stdio.h>
#include <string.h>

#include "elf/binary.h"
#include "arch/arch.h"
#include "check.h"

static long func_named(const struct elf_binary *b, const char *name)
{
	for (size_t i = 0; i < b->nfuncs; i++)
		if (!strcmp(b->funcs[i].name, name))
			return (long)i;
	return -1;
}

static void check_model(const char *path)
{
	struct elf_binary *b;
	struct core_err err = { 0 };
	int rc = elf_binary_open(path, &b, &err);
	expect(rc == 0, "%s: %s", path, err.msg);
	if (rc)
		return;
	long leaf = func_named(b, "fx_leaf"), mid = func_named(b, "fx_mid");
	long tail = func_named(b, "fx_tail"), hot = func_named(b, "fx_hot");
	expect(leaf >= 0 && mid >= 0 && tail >= 0 && hot >= 0, "fixture functions missing");
	for (size_t i = 1; i < b->nfuncs; i++)
		expect(b->funcs[i - 1].addr < b->funcs[i].addr, "functions not sorted/unique");

	/* Every call site is an e8/e9 whose rel32, read from the file, reaches
	 * the start of the function the model says. */
	size_t to_leaf = 0, jumps = 0;
	for (size_t i = 0; i < b->nsites; i++) {
		uint8_t insn[5];
		expect(elf_read_vaddr(b, b->sites[i].site, insn, 5, &err) == 0, "%s", err.msg);
		expect(insn[0] == b->sites[i].opcode && (insn[0] == 0xe8 || insn[0] == 0xe9),
		       "site 0x%llx opcode %02x", (unsigned long long)b->sites[i].site, insn[0]);
		expect(arch_x86_branch_target(b->sites[i].site, insn) == b->funcs[b->sites[i].func].addr,
		       "site 0x%llx does not reach %s", (unsigned long long)b->sites[i].site,
		       b->funcs[b->sites[i].func].name);
		to_leaf += b->sites[i].func == (uint32_t)leaf;
		jumps += insn[0] == 0xe9;
	}
	expect(to_leaf >= 4, "%zu call sites of fx_leaf, want >= 4", to_leaf);
	expect(jumps >= 1, "no tail jump (e9) found");
	/* Calls to a static function in the same section carry no relocation:
	 * only the decoder sweep finds them. */
	long local = func_named(b, "fx_local");
	size_t to_local = 0;
	for (size_t i = 0; i < b->nsites; i++)
		to_local += b->sites[i].func == (uint32_t)local;
	expect(local >= 0 && to_local >= 3, "%zu call sites of static fx_local, want >= 3", to_local);
	expect(b->nsites > b->reloc_sites, "the sweep added no site to the %zu from relocations",
	       b->reloc_sites);

	/* fx_table: three read-only slots; fx_hook: one writable slot. */
	size_t ro = 0, rw = 0;
	for (size_t i = 0; i < b->nslots; i++) {
		long f = b->slots[i].func;
		if (f == leaf || f == mid || f == tail) {
			ro += !b->slots[i].writable;
			rw += b->slots[i].writable;
		}
	}
	expect(ro == 3, "%zu read-only slots to fixture functions, want 3 (fx_table)", ro);
	expect(rw == 1, "%zu writable slots, want 1 (fx_hook)", rw);
	expect(b->build_id_len == 20, "build-id length %zu", b->build_id_len);

	/* The pointer rule: whose address the program can obtain otherwise
	 * than from a slot. By hand: fx_leaf (passed to printf: a relocated
	 * lea), fx_cold (likewise), fx_static_taken (lea in its own section,
	 * no relocation: the sweep), fx_exported (.dynsym); fx_mid, fx_tail
	 * (only in tables) and fx_local (only called) are not. */
	static const struct { const char *name; int taken; } taken[] = {
		{ "fx_leaf", 1 }, { "fx_cold", 1 }, { "fx_static_taken", 1 }, { "fx_exported", 1 },
		{ "fx_mid", 0 }, { "fx_tail", 0 }, { "fx_local", 0 }, { "fx_hot", 0 },
	};
	for (size_t i = 0; i < sizeof(taken) / sizeof(taken[0]); i++) {
		long f = func_named(b, taken[i].name);
		expect(f >= 0 && b->funcs[f].addr_taken == taken[i].taken, "%s: addr_taken %d, want %d",
		       taken[i].name, f >= 0 ? b->funcs[f].addr_taken : -1, taken[i].taken);
	}
	expect(!b->imports_dladdr, "the fixture does not import dladdr");

	/* Entry-patch rules: a loop back into the first bytes, a call there
	 * and an indirect jump each forbid it; plain code allows it. */
	static const struct { const char *name; int ok; } entries[] = {
		{ "fx_entry_loop", 0 }, { "fx_entry_call", 0 }, { "fx_entry_ind", 0 }, { "fx_entry_ok", 1 },
	};
	for (size_t i = 0; i < sizeof(entries) / sizeof(entries[0]); i++) {
		long f = func_named(b, entries[i].name);
		expect(f >= 0 && b->funcs[f].entry_ok == entries[i].ok, "%s: entry_ok %d, want %d",
		       entries[i].name, f >= 0 ? b->funcs[f].entry_ok : -1, entries[i].ok);
	}
	expect(elf_func_containing(b, b->funcs[hot].addr + 1) == hot, "containing lookup");
	elf_binary_close(b);
}

static void check_refusal(const char *path, int want, const char *needle)
{
	struct elf_binary *b = NULL;
	struct core_err err = { 0 };
	int rc = elf_binary_open(path, &b, &err);
	expect(rc == want, "%s: got %d (%s), want %d", path, rc, err.msg, want);
	expect(b == NULL, "no model on failure");
	expect(strstr(err.msg, needle) != NULL, "message '%s' lacks '%s'", err.msg, needle);
}

/* The PLT entries of functions that never return (elf/plt.c), against
 * objdump's `<name@plt>` labels: the ones named here as ending the
 * process are listed as such, those named as unwinding through their
 * caller as such, the ones that return are not listed, and nothing else
 * is. */
static void check_noreturn_plt(const char *path)
{
	static const char *const ends[] = { "exit", "_exit", "_ZSt9terminatev", NULL };
	/* Their return site is what the unwinder uses while they run. */
	static const char *const unwinds[] = { "__cxa_throw", "_Unwind_Resume",
					       "_ZSt20__throw_length_errorPKc", NULL };
	static const char *const returns[] = { "printf", "__cxa_allocate_exception",
					       "__cxa_begin_catch", NULL };
	struct {
		const char *const *names;
		int kind;
		size_t seen;
	} groups[] = { { ends, ELF_NORETURN_ENDS, 0 }, { unwinds, ELF_NORETURN_UNWINDS, 0 },
		       { returns, 0, 0 } };
	struct elf_binary *b;
	struct core_err err = { 0 };
	int rc = elf_binary_open(path, &b, &err);
	expect(rc == 0, "%s: %s", path, err.msg);
	if (rc)
		return;
	char cmd[4200], line[1024];
	snprintf(cmd, sizeof(cmd), "objdump -d '%s'", path);
	FILE *f = popen(cmd, "r");
	expect(f != NULL, "cannot run objdump");
	size_t labels = 0, listed = 0;
	while (f && fgets(line, sizeof(line), f)) {
		unsigned long long at;
		char name[512];
		if (sscanf(line, "%llx <%511[^@>]@plt>:", &at, name) != 2)
			continue;
		labels++;
		int kind = elf_noreturn_target(b, at);
		listed += kind != 0;
		for (size_t g = 0; g < 3; g++)
			for (size_t i = 0; groups[g].names[i]; i++)
				if (!strcmp(name, groups[g].names[i])) {
					groups[g].seen++;
					expect(kind == groups[g].kind, "%s@plt at 0x%llx: kind %d, "
					       "not %d", name, at, kind, groups[g].kind);
				}
	}
	if (f)
		pclose(f);
	fprintf(stderr, "%s: %zu PLT entries, %zu listed as never returning (%zu + %zu in the "
		"model)\n", path, labels, listed, b->nnoreturn_plt, b->nunwinding_plt);
	expect(groups[0].seen == 3 && groups[1].seen == 3 && groups[2].seen == 3,
	       "objdump showed %zu of the 3 ending, %zu of the 3 unwinding and %zu of the 3 "
	       "returning entries", groups[0].seen, groups[1].seen, groups[2].seen);
	expect(listed == b->nnoreturn_plt + b->nunwinding_plt,
	       "%zu listed entries are not objdump's PLT entries",
	       b->nnoreturn_plt + b->nunwinding_plt - listed);
	elf_binary_close(b);
}

int main(int argc, char **argv)
{
	if (argc < 5) {
		fprintf(stderr, "usage: %s fixture fixture-norelocs fixture-stripped cxx-program\n",
			argv[0]);
		return 2;
	}
	check_noreturn_plt(argv[4]);
	check_model(argv[1]);
	check_refusal(argv[2], OCOLOS_ENORELOCS, "-Wl,--emit-relocs");
	check_refusal(argv[3], OCOLOS_ENOSYMS, "stripped");
	check_refusal(__FILE__, OCOLOS_EELF, "not a 64-bit ELF");
	check_refusal("/nonexistent/binary", OCOLOS_EIO, "cannot open");
	test_done();
}
