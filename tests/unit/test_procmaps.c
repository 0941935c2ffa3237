/* Free-range search over a synthetic address-space map, and the real maps. */
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/procmaps.h"
#include "check.h"

int main(void)
{
	struct procmaps_entry v[] = {
		{ .start = 0x400000, .end = 0x500000 },
		{ .start = 0x600000, .end = 0x10000000 },
		{ .start = 0x10400000, .end = 0x20000000 },
	};
	struct procmaps m = { .v = v, .n = 3, .cap = 3 };
	/* A 4 MiB hole at 0x10000000: found when it fits, aligned. */
	uint64_t a = core_procmaps_find_free(&m, 4 << 20, 1 << 20, 0x500000, 0x30000000, 0x10000000);
	expect(a == 0x10000000, "got 0x%llx", (unsigned long long)a);
	/* Too big for that hole: next gap above 0x20000000. */
	a = core_procmaps_find_free(&m, 8 << 20, 1 << 20, 0x500000, 0x30000000, 0x10000000);
	expect(a == 0x20000000, "got 0x%llx", (unsigned long long)a);
	/* Window too small. */
	a = core_procmaps_find_free(&m, 8 << 20, 1 << 20, 0x20000000, 0x20400000, 0x20000000);
	expect(a == 0, "got 0x%llx", (unsigned long long)a);
	/* Prefers the candidate nearest `near` inside a large gap. */
	a = core_procmaps_find_free(&m, 1 << 20, 1 << 20, 0x20000000, 0x40000000, 0x30000000);
	expect(a == 0x30000000, "got 0x%llx", (unsigned long long)a);
	/* An exactly fitting hole is used; a range never overlaps a mapping. */
	a = core_procmaps_find_free(&m, 1 << 20, 1 << 20, 0x400000, 0x10400000, 0x700000);
	expect(a == 0x500000, "got 0x%llx", (unsigned long long)a);
	a = core_procmaps_find_free(&m, 2 << 20, 1 << 20, 0x400000, 0x10400000, 0x700000);
	expect(a == 0x10000000, "got 0x%llx", (unsigned long long)a);

	/* The real map of this process: our own executable gives a bias. */
	struct procmaps real = { 0 };
	struct core_err err = { 0 };
	expect(core_procmaps_read(getpid(), &real, &err) == 0, "%s", err.msg);
	expect(real.n > 3, "only %zu mappings", real.n);
	struct stat st;
	expect(stat("/proc/self/exe", &st) == 0, "stat");
	uint64_t bias = 1;
	expect(core_procmaps_load_bias(&real, st.st_dev, st.st_ino, 0, 0, &bias, &err) == 0, "%s", err.msg);
	/* A file that is not mapped is reported as replaced. */
	core_err_clear(&err);
	expect(core_procmaps_load_bias(&real, st.st_dev, st.st_ino + 12345, 0, 0, &bias, &err) == OCOLOS_EIO,
	       "unmapped inode must fail");
	expect(strstr(err.msg, "replaced") != NULL, "message: %s", err.msg);
	core_procmaps_free(&real);
	test_done();
}
