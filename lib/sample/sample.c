/* Sampler dispatch and the sample container shared by all backends. */
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
	s->ips = NULL;
	s->n = s->cap = 0;
}

int sample_collect(const struct sample_config *cfg, struct sample_set *out,
		   struct core_err *err)
{
	if (!cfg->pid || !cfg->hz || !cfg->window_ms)
		return core_errf(err, OCOLOS_EINVAL, "sampler needs a pid, a rate and a window");
	switch (cfg->backend) {
	case SAMPLE_PERF_IP:
		return sample_perf_ip_collect(cfg, out, err);
	}
	return core_errf(err, OCOLOS_EINVAL, "unknown sampler backend %d", (int)cfg->backend);
}
