/* Pre-aggregated profile writer (see profile.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/util.h"
#include "infer/profile.h"

int infer_link_samples(const struct elf_binary *b, uint64_t bias, const struct sample_set *s,
		       uint64_t **out, size_t *n, struct core_err *err)
{
	*out = NULL;
	*n = 0;
	uint64_t *v = malloc((s->n ? s->n : 1) * sizeof(*v));
	if (!v)
		return core_errf(err, OCOLOS_ENOMEM, "out of memory sorting samples");
	size_t k = 0;
	for (size_t i = 0; i < s->n; i++) {
		uint64_t a = s->ips[i] - bias;
		if (elf_func_containing(b, a) >= 0)
			v[k++] = a;
	}
	if (!k) {
		free(v);
		/* "none of the 0 samples fell in the code" (issue 13): with no
		 * sample at all, no thread ran. */
		if (!s->n)
			return core_errf(err, OCOLOS_ENOPROFILE,
					 "the window took no sample at all: no thread of the process "
					 "ran (it was idle: blocked, sleeping or stopped); optimize while "
					 "it does its real work, or lengthen opts.profile_ms (the tools' "
					 "--profile)");
		return core_errf(err, OCOLOS_ENOPROFILE,
				 "none of the %zu samples fell in the code of '%s' (the program was idle, "
				 "or busy only in libraries or the kernel); optimize while it does its "
				 "real work, or lengthen opts.profile_ms (the tools' --profile)", s->n,
				 b->path);
	}
	if (k)
		qsort(v, k, sizeof(*v), core_cmp_u64);
	*out = v;
	*n = k;
	return 0;
}

int infer_write_preagg(const struct elf_binary *b, uint64_t bias,
		       const struct sample_set *s, const char *path,
		       struct infer_profile_stats *st, struct core_err *err)
{
	memset(st, 0, sizeof(*st));
	uint64_t *v;
	size_t n;
	int rc = infer_link_samples(b, bias, s, &v, &n, err);
	if (rc)
		return rc;
	FILE *f = fopen(path, "we");
	if (!f) {
		free(v);
		return core_errf(err, OCOLOS_EIO, "cannot write profile '%s': %s", path, strerror(errno));
	}
	fprintf(f, "E %s\n", s->event ? s->event : "cycles");
	long last_func = -1;
	for (size_t i = 0; i < n;) {
		size_t j = i;
		while (j < n && v[j] == v[i])
			j++;
		fprintf(f, "S %" PRIx64 " %zu\n", v[i], j - i);
		long fn = elf_func_containing(b, v[i]);
		st->functions += fn != last_func;
		last_func = fn;
		st->addresses++;
		i = j;
	}
	st->in_binary = n;
	free(v);
	if (fclose(f) != 0)
		return core_errf(err, OCOLOS_EIO, "cannot write profile '%s': %s", path, strerror(errno));
	return 0;
}
