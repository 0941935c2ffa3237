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

int sample_set_reserve(struct sample_set *s, size_t stacks, size_t branches)
{
	if (core_reserve((void **)&s->stack_start, &s->cap_stacks, s->nstacks + stacks,
			 sizeof(*s->stack_start)) ||
	    core_reserve((void **)&s->branches, &s->cap_branches, s->nbranches + branches,
			 sizeof(*s->branches)))
		return OCOLOS_ENOMEM;
	return 0;
}

void sample_set_free(struct sample_set *s)
{
	/* Samples name code addresses: cleared (core/util.c says why). */
	core_free_clear(s->ips, s->cap * sizeof(*s->ips));
	core_free_clear(s->branches, s->cap_branches * sizeof(*s->branches));
	core_free_clear(s->stack_start, s->cap_stacks * sizeof(*s->stack_start));
	s->ips = NULL;
	s->branches = NULL;
	s->stack_start = NULL;
	s->n = s->cap = s->nbranches = s->cap_branches = s->nstacks = s->cap_stacks = 0;
}
