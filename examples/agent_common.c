/* Rounds on a pid with JSON-line reporting, shared by the two tools. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include <ocolos/ocolos.h>

#include "agent_common.h"

static void log_cb(enum ocolos_log_level level, const char *msg, void *user)
{
	static const char *const names[] = { "error", "warn", "info", "debug" };
	fprintf(stderr, "ocolos %s: %s\n", names[level & 3], msg);
}

static void json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			putchar('\\');
		if ((unsigned char)*s >= 0x20)
			putchar(*s);
	}
	putchar('"');
}

static void report(pid_t pid, int round, int rc, const struct ocolos_stats *st,
		   const struct ocolos_ctx *ctx)
{
	printf("{\"pid\":%d,\"round\":%d,\"ok\":%s", (int)pid, round, rc ? "false" : "true");
	if (rc) {
		printf(",\"error\":");
		json_string(ocolos_strerror(rc));
		printf(",\"message\":");
		json_string(ocolos_last_error(ctx));
	}
	printf(",\"pause_ms\":%.3f,\"functions_moved\":%u,\"c1_bytes\":%llu,"
	       "\"call_sites_patched\":%u,\"pointer_slots_patched\":%u,\"bolt_ms\":%.1f,"
	       "\"samples\":%llu,\"samples_in_binary\":%llu,\"threads_stopped\":%u}\n",
	       st->pause_ns / 1e6, st->functions_moved, (unsigned long long)st->c1_bytes,
	       st->call_sites_patched, st->pointer_slots_patched, st->bolt_ns / 1e6,
	       (unsigned long long)st->samples, (unsigned long long)st->samples_in_binary,
	       st->threads_stopped);
	fflush(stdout);
}

static int sleep_unless(double s, volatile sig_atomic_t *stop, pid_t pid,
			const struct agent_cfg *cfg)
{
	for (double t = 0; t < s; t += 0.1) {
		if ((stop && *stop) || (kill(pid, 0) != 0 && errno == ESRCH) ||
		    (cfg->poll && cfg->poll(cfg->poll_user)))
			return -1;
		struct timespec ts = { 0, 100000000 };
		nanosleep(&ts, NULL);
	}
	return 0;
}

int agent_run(pid_t pid, const struct agent_cfg *cfg, volatile sig_atomic_t *stop)
{
	OCOLOS_OPTS(ocolos_opts, opts, .profile_ms = (uint32_t)(cfg->profile_s * 1000),
		    .log_fn = cfg->verbose ? log_cb : NULL);
	struct ocolos_ctx *ctx;
	int rc = ocolos_open_pid(pid, &opts, &ctx);
	if (rc) {
		OCOLOS_OPTS(ocolos_stats, none);
		report(pid, 0, rc, &none, NULL);
		fprintf(stderr, "cannot open process %d: %s\n", (int)pid, ocolos_strerror(rc));
		return rc;
	}
	int failures = 0;
	for (int round = 1; cfg->rounds == 0 || round <= cfg->rounds; round++) {
		if (round > 1) {
			if (sleep_unless(cfg->every_s, stop, pid, cfg))
				break;
			ocolos_revert(ctx, NULL); /* optimize afresh from the original code */
		}
		OCOLOS_OPTS(ocolos_stats, st);
		rc = ocolos_round(ctx, &st);
		report(pid, round, rc, &st, ctx);
		failures += rc != 0;
		if (rc == OCOLOS_ENOPROC || (stop && *stop) || (cfg->poll && cfg->poll(cfg->poll_user)))
			break;
	}
	ocolos_close(ctx);
	return failures ? -1 : 0;
}
