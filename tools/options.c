/*
 * The command line both tools share: strict number parsing, the shared
 * options, their help text (which must list every option with its default,
 * the output and the exit statuses: tests/tools/cli.py checks it against
 * the man pages), and --version.
 *
 * Why not strtol/atof: atoi("12abc") is 12, strtoul("-1") is ULONG_MAX
 * (`--profile -1` once meant a window of 49 days), and strtod takes
 * "1e9", "inf" and "0x10". The parsers here take digits and one decimal
 * point only and say exactly what was wrong, naming the option.
 */
#include <ctype.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "tool.h"

#ifndef OCOLOS_TOOLS_VERSION
#define OCOLOS_TOOLS_VERSION OCOLOS_VERSION_STRING
#endif

/* Print why `arg` of `opt` is refused; "expected" names the range. */
static int refuse(const char *prog, const char *opt, const char *arg, const char *why,
		  const char *expected)
{
	fprintf(stderr, "%s: %s: '%s' %s; expected %s\n", prog, opt, arg, why, expected);
	return -1;
}

int tool_parse_uint(const char *prog, const char *opt, const char *arg, uint64_t min,
		    uint64_t max, uint64_t *out)
{
	char expected[96];
	snprintf(expected, sizeof(expected), "a whole number from %llu to %llu",
		 (unsigned long long)min, (unsigned long long)max);
	if (arg[0] == '-' && isdigit((unsigned char)arg[1]))
		return refuse(prog, opt, arg, "is negative", expected);
	size_t digits = strspn(arg, "0123456789");
	if (!digits || arg[digits])
		return refuse(prog, opt, arg, "is not a whole number", expected);
	uint64_t v = 0;
	for (size_t i = 0; i < digits; i++) {
		if (v > (UINT64_MAX - 9) / 10) /* past any max: stop before wrapping */
			return refuse(prog, opt, arg, "is out of range", expected);
		v = v * 10 + (uint64_t)(arg[i] - '0');
	}
	if (v == 0 && min > 0)
		return refuse(prog, opt, arg, "is zero", expected);
	if (v < min || v > max)
		return refuse(prog, opt, arg, "is out of range", expected);
	*out = v;
	return 0;
}

void tool_format_seconds(uint32_t ms, char *buf, size_t size)
{
	int n = snprintf(buf, size, "%u.%03u", ms / 1000, ms % 1000);
	while (n > 0 && buf[n - 1] == '0')
		buf[--n] = '\0';
	if (n > 0 && buf[n - 1] == '.')
		buf[--n] = '\0';
}

int tool_parse_seconds(const char *prog, const char *opt, const char *arg, uint32_t min_ms,
		       uint32_t max_ms, uint32_t *out_ms)
{
	char expected[96], lo[16], hi[16];
	tool_format_seconds(min_ms, lo, sizeof(lo));
	tool_format_seconds(max_ms, hi, sizeof(hi));
	snprintf(expected, sizeof(expected), "seconds from %s to %s (at most 3 decimals)", lo, hi);
	if (arg[0] == '-' && (isdigit((unsigned char)arg[1]) || arg[1] == '.'))
		return refuse(prog, opt, arg, "is negative", expected);
	size_t whole = strspn(arg, "0123456789");
	const char *frac = arg + whole;
	size_t fdigits = 0;
	if (*frac == '.') {
		frac++;
		fdigits = strspn(frac, "0123456789");
	}
	if ((!whole && !fdigits) || frac[fdigits])
		return refuse(prog, opt, arg, "is not a number of seconds", expected);
	if (fdigits > 3)
		return refuse(prog, opt, arg, "is finer than a millisecond", expected);
	uint64_t ms = 0;
	for (size_t i = 0; i < whole; i++) {
		if (ms > UINT32_MAX) /* far past max_ms: stop before wrapping */
			return refuse(prog, opt, arg, "is out of range", expected);
		ms = ms * 10 + (uint64_t)(arg[i] - '0');
	}
	ms *= 1000;
	for (size_t i = 0, scale = 100; i < fdigits; i++, scale /= 10)
		ms += (uint64_t)(frac[i] - '0') * scale;
	if (ms == 0 && min_ms > 0)
		return refuse(prog, opt, arg, "is zero", expected);
	if (ms < min_ms || ms > max_ms)
		return refuse(prog, opt, arg, "is out of range", expected);
	*out_ms = (uint32_t)ms;
	return 0;
}

static int parse_sampler(const char *prog, const char *arg, int *out)
{
	static const struct {
		const char *name;
		int value;
	} names[] = { { "auto", OCOLOS_SAMPLER_AUTO }, { "perf-lbr", OCOLOS_SAMPLER_PERF_LBR },
		      { "perf-ip", OCOLOS_SAMPLER_PERF_IP } };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!strcmp(arg, names[i].name)) {
			*out = names[i].value;
			return 0;
		}
	/* The library's third sampler runs inside the process it samples. */
	return refuse(prog, "--sampler", arg,
		      strcmp(arg, "sigprof") ? "is not a sampler"
					     : "samples only the process that links libocolos, not a pid",
		      "auto, perf-lbr or perf-ip");
}

/* Ranges. A window of an hour is far past any useful profile (the gain
 * levels off after seconds: docs/benchmarks.md); the others keep values a
 * typo would produce (a day of BOLT) out. */
#define PROFILE_MAX_MS (3600u * 1000u)
#define EVERY_MAX_MS (86400u * 1000u)
#define BOLT_TIMEOUT_MAX_MS (86400u * 1000u)
#define ROUNDS_MAX 1000000u
#define HZ_MAX 100000u /* the kernel's default perf_event_max_sample_rate */

int tool_option(struct tool_cfg *cfg, int c, const char *arg)
{
	uint64_t v;
	switch (c) {
	case 'P':
	case TOOL_OPT_PROFILE_MAX:
		/* A fixed window, or one that ends when the profile converges:
		 * not both (the library's profile_ms / profile_max_ms). */
		if (c == 'P' ? cfg->profile_max_ms != 0 : cfg->profile_explicit) {
			fprintf(stderr, "%s: --profile and --profile-max: choose one (a fixed "
				"window, or sampling until the profile converges)\n", cfg->prog);
			return -1;
		}
		if (c == 'P')
			cfg->profile_explicit = 1;
		return tool_parse_seconds(cfg->prog, c == 'P' ? "--profile" : "--profile-max", arg, 1,
					  PROFILE_MAX_MS, c == 'P' ? &cfg->profile_ms
								   : &cfg->profile_max_ms);
	case TOOL_OPT_MAX_OVERHEAD: {
		/* A percentage, parsed as seconds are (at most 3 decimals). */
		uint32_t milli;
		if (tool_parse_seconds(cfg->prog, "--max-overhead", arg, 100, 100000, &milli))
			return -1;
		cfg->max_overhead_permille = milli / 100;
		return 0;
	}
	case 'e':
		return tool_parse_seconds(cfg->prog, "--every", arg, 1, EVERY_MAX_MS, &cfg->every_ms);
	case 'n':
		if (tool_parse_uint(cfg->prog, "--rounds", arg, 1, ROUNDS_MAX, &v))
			return -1;
		cfg->rounds = (uint32_t)v;
		return 0;
	case TOOL_OPT_HZ:
		if (tool_parse_uint(cfg->prog, "--hz", arg, 1, HZ_MAX, &v))
			return -1;
		cfg->sample_hz = (uint32_t)v;
		return 0;
	case TOOL_OPT_SAMPLER:
		return parse_sampler(cfg->prog, arg, &cfg->sampler);
	case TOOL_OPT_BOLT_TIMEOUT:
		return tool_parse_seconds(cfg->prog, "--bolt-timeout", arg, 1, BOLT_TIMEOUT_MAX_MS,
					  &cfg->bolt_timeout_ms);
	case TOOL_OPT_BOLT:
	case TOOL_OPT_BINARY:
	case TOOL_OPT_TMP_DIR:
		if (!arg[0]) {
			fprintf(stderr, "%s: --%s: an empty path\n", cfg->prog,
				c == TOOL_OPT_BOLT ? "bolt" : c == TOOL_OPT_BINARY ? "binary" : "tmp-dir");
			return -1;
		}
		*(c == TOOL_OPT_BOLT ? &cfg->bolt_path : c == TOOL_OPT_BINARY ? &cfg->binary_path
									     : &cfg->tmp_dir) = arg;
		return 0;
	case TOOL_OPT_KEEP_WORK_DIR:
		cfg->keep_work_dir = 1;
		return 0;
	case TOOL_OPT_WORK_CMD:
		if (!arg[0]) {
			fprintf(stderr, "%s: --work-cmd: an empty command\n", cfg->prog);
			return -1;
		}
		cfg->work_cmd = arg;
		return 0;
	case TOOL_OPT_EXPORT_PROFILE:
	case TOOL_OPT_PROFILE_FROM:
		if (!arg[0]) {
			fprintf(stderr, "%s: --%s: an empty path\n", cfg->prog,
				c == TOOL_OPT_EXPORT_PROFILE ? "export-profile" : "profile-from");
			return -1;
		}
		if (c == TOOL_OPT_EXPORT_PROFILE) {
			cfg->export_profile = arg;
			return 0;
		}
		if (cfg->nprofile_from == TOOL_PROFILES_MAX) {
			fprintf(stderr, "%s: --profile-from: more than %d files\n", cfg->prog,
				TOOL_PROFILES_MAX);
			return -1;
		}
		cfg->profile_from[cfg->nprofile_from++] = arg;
		return 0;
	case TOOL_OPT_BENEFIT_MIN: {
		/* A ratio, parsed as seconds are: digits, at most 3 decimals. */
		uint32_t milli;
		if (tool_parse_seconds(cfg->prog, "--benefit-min", arg, 1, 100000, &milli))
			return -1;
		cfg->benefit_min = milli / 1000.0;
		return 0;
	}
	case TOOL_OPT_BENEFIT_PAIRS:
		if (tool_parse_uint(cfg->prog, "--benefit-pairs", arg, 1, 100, &v))
			return -1;
		cfg->benefit_pairs = (uint32_t)v;
		return 0;
	case TOOL_OPT_BENEFIT_WINDOW:
		/* Windows of a busy machine need seconds (docs/benchmarks.md,
		 * "Fleet"): the library's 300 ms suits a quiet one. */
		if (tool_parse_seconds(cfg->prog, "--benefit-window", arg, 1, 60000,
				       &cfg->benefit_window_ms))
			return -1;
		return 0;
	case TOOL_OPT_JSON:
		cfg->format = TOOL_FORMAT_JSON;
		return 0;
	case TOOL_OPT_TEXT:
		cfg->format = TOOL_FORMAT_TEXT;
		return 0;
	case 'q':
		cfg->quiet = 1;
		return 0;
	case 'v':
		cfg->verbose++;
		return 0;
	}
	return 1;
}

void tool_help_common(FILE *f, int supervise)
{
	fprintf(f,
"  -P, --profile SEC     sampling window of each round (default 2; 0.001 to 3600)\n"
"      --profile-max SEC  instead of a fixed window, sample until the profile\n"
"                        converges (the share of samples per 256-byte block\n"
"                        of code stops changing), at most SEC at the asked\n"
"                        rate (a rate lowered by --max-overhead: up to 16x\n"
"                        as long; 0.001 to 3600)\n"
"      --max-overhead PCT  keep sampling's cost under PCT %% of the sampled\n"
"                        threads' CPU time: a lower rate, a longer window\n"
"                        (default: 2 with --profile-max, else no limit;\n"
"                        0.1 to 100, 100: no limit)\n"
"  -e, --every SEC       after each round wait SEC and run the next one: a new\n"
"                        profile of the code in use, the next generation of\n"
"                        code, the older one retired; until stopped\n"
"                        (default: one round; 0.001 to 86400)\n"
"  -n, --rounds N        stop after N rounds (default 1, or unlimited with\n"
"                        --every; 1 to 1000000)\n"
"      --sampler NAME    auto, perf-lbr, perf-ip (default auto: branch stacks\n"
"                        where the CPU has them, else IP samples)\n"
"      --hz N            samples per second per thread (default 10000; 1 to 100000)\n"
"      --bolt PATH       llvm-bolt to run (default: /usr/lib/llvm-22/bin/llvm-bolt,\n"
"                        other /usr/lib/llvm-N/bin/llvm-bolt, then $PATH)\n"
"      --bolt-timeout SEC  kill llvm-bolt after SEC (default 300; 1 to 86400)\n"
"      --binary PATH     the file the process runs, if /proc/PID/exe is not it\n"
"                        (default: /proc/PID/exe)\n"
"      --tmp-dir DIR     parent of the private work directory (default $TMPDIR,\n"
"                        else /tmp)\n"
"      --keep-work-dir   keep the profile, BOLT's output and log (path logged)\n"
"      --work-cmd CMD    the benefit check: CMD (run by /bin/sh) prints a count of\n"
"                        the work the process has done (requests, operations);\n"
"                        after each round the optimized and the original code\n"
"                        alternate in short windows, and the optimized code is\n"
"                        kept only if it does more work (default: no check)\n"
"      --export-profile F  write each round's profile to F (gzip of BOLT's\n"
"                        pre-aggregated branch records; the build-id in its\n"
"                        header): for other instances of the same build\n"
"      --profile-from F  no sampling: the round reads its profile from F, a\n"
"                        file --export-profile wrote on an instance of the same\n"
"                        build; repeat to merge several (up to 64)\n"
"      --benefit-min R   with --work-cmd, the ratio of work rates (optimized /\n"
"                        original) to reach; below it the round reverts and\n"
"                        fails with OCOLOS_ENOGAIN (default 1; 0.001 to 100)\n"
"      --benefit-pairs N  with --work-cmd, pairs of windows (original, optimized)\n"
"                        measured (default 5; 1 to 100)\n"
"      --benefit-window SEC  with --work-cmd, the length of one window (default\n"
"                        0.3; 0.001 to 60)\n"
"      --json            report each round as one JSON line\n"
"      --text            report each round as a human-readable summary\n"
"                        (default: --text if stdout is a terminal, else --json)\n"
"  -q, --quiet           no progress lines on stderr\n"
"  -v, --verbose         the library's log on stderr (twice: debug)\n"
"  -h, --help            this help, then exit 0\n"
"  -V, --version         the tool's and the library's version, then exit 0\n"
"\n"
"Numbers take digits only (SEC: up to 3 decimals); a negative, zero (where\n"
"not allowed), malformed or out-of-range value is refused.\n"
"\n"
"Output: one report per round on stdout (and one for a process that cannot\n"
"be opened): --json writes one line {\"pid\":..,\"round\":..,\"ok\":..,...}\n"
"(schema: docs/tools.md in the source, %s(1)); --text a few lines.\n"
"Progress lines, one as each stage starts and ends with its elapsed time,\n"
"go to stderr (-q: none).\n"
"\n"
"SIGINT, SIGTERM%s: the running round is canceled at its next safe point\n"
"(the process keeps the code it runs; nothing of the round is left in it),\n"
"reported as failed with OCOLOS_ECANCELED, and no further round starts.\n"
"\n"
"Exit status:\n",
		supervise ? "ocolos-supervise" : "ocolos-agent",
		supervise ? " (also SIGHUP, SIGQUIT; all forwarded to CMD)" : "");
	if (supervise)
		fprintf(f,
"  the status of CMD: its exit code, or 128 + the signal that ended it\n"
"  (round failures are reported, not turned into an exit status)\n"
"  125  bad command line, or CMD could not be started or waited for\n"
"  126  CMD is not executable      127  CMD was not found\n");
	else
		fprintf(f,
"  0    every round succeeded (or the process exited between rounds)\n"
"  1    a round failed, or the process could not be opened (see its report)\n"
"  2    bad command line\n"
"  130  stopped by SIGINT, 143 by SIGTERM (128 + the signal)\n");
}

void tool_version(const char *prog)
{
	printf("%s %s\nlibocolos %s (loaded; built against %s)\n", prog, OCOLOS_TOOLS_VERSION,
	       ocolos_version(), OCOLOS_VERSION_STRING);
}

int tool_check_options(const struct tool_cfg *cfg)
{
	if (!cfg->work_cmd && (cfg->benefit_min || cfg->benefit_pairs || cfg->benefit_window_ms)) {
		fprintf(stderr, "%s: --benefit-min, --benefit-pairs and --benefit-window set up the "
			"benefit check, which needs --work-cmd CMD (a count of the work done)\n",
			cfg->prog);
		return -1;
	}
	return 0;
}

int tool_usage(const char *prog, int code)
{
	fprintf(stderr, "Try '%s --help' for more information.\n", prog);
	return code;
}
