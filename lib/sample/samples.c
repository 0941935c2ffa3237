/* The sample container (struct sample_set, sample.h). */
#include <stdlib.h>

#include "core/util.h"
#include "sample/sample.h"

int sample_set_push(struct sample_set *s, uint64_t ip)
{
	if (core_grow((void **)&s->ips, &s->cap, s->n, sizeof(*s->ips)))
		return OCOLOS_ENOMEM;
	s->ips[s->n++] = ip;
	return 0;
}

void sample_set_free(struct sample_set *s)
{
	free(s->ips);
	free(s->branches);
	free(s->stack_start);
	s->ips = NULL;
	s->branches = NULL;
	s->stack_start = NULL;
	s->n = s->cap = s->nbranches = s->cap_branches = s->nstacks = s->cap_stacks = 0;
}
