/*
 * ocolos-agent — optimize an already running process by pid.
 *
 *   ocolos-agent --pid PID [--profile SEC] [--every SEC] [--rounds N] [...]
 *   ocolos-agent --pid PID --revert
 *
 * The target needs nothing from libocolos: it must only be built with
 * -Wl,--emit-relocs, and this agent must be allowed to ptrace it. One
 * report per round on stdout (a JSON line, or a summary on a terminal),
 * progress on stderr. Each round continues from what earlier rounds left
 * in the process (its state record: this agent's, or an earlier one's,
 * even one that was killed): the next generation of code, the older one
 * retired. With --every, after a round it waits SEC seconds and runs the
 * next, so the layout follows the target's behaviour. --revert sends the
 * process back to its original code. The whole contract (options, output,
 * exit statuses): --help, ocolos-agent(1), docs/tools.md.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "tool.h"

static const char prog[] = "ocolos-agent";

static void help(void)
{
	printf("Usage: %s --pid PID [OPTION]...\n"
	       "Optimize the code layout of running process PID with LLVM BOLT, in place:\n"
	       "sample it, have llvm-bolt lay out its hot code anew, map that code into it\n"
	       "and redirect calls there. The process needs only -Wl,--emit-relocs; this\n"
	       "tool must be allowed to ptrace it.\n"
	       "\n"
	       "  -p, --pid PID         the process to optimize (required; 1 to 4194304)\n"
	       "      --revert          no round: send the process back to its original code\n"
	       "                        and unmap the optimized code no thread is in (one\n"
	       "                        report, stage \"revert\"); not with --every/--rounds\n",
	       prog);
	tool_help_common(stdout, 0);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = { { "pid", required_argument, 0, 'p' },
		{ "revert", no_argument, 0, TOOL_OPT_REVERT },
		TOOL_COMMON_LONGOPTS, { 0, 0, 0, 0 } };
	struct tool_cfg cfg = { .prog = prog, .profile_ms = TOOL_DEFAULT_PROFILE_MS };
	uint64_t pid = 0;
	int c;
	while ((c = getopt_long(argc, argv, "p:" TOOL_COMMON_SHORTOPTS, lo, NULL)) != -1) {
		if (c == 'h') {
			help();
			return 0;
		}
		if (c == 'V') {
			tool_version(prog);
			return 0;
		}
		if (c == TOOL_OPT_REVERT) {
			cfg.revert = 1;
			continue;
		}
		/* PID_MAX_LIMIT of 64-bit Linux: no pid is larger. */
		int rc = c == 'p' ? tool_parse_uint(prog, "--pid", optarg, 1, 4194304, &pid)
				  : tool_option(&cfg, c, optarg);
		if (rc) /* -1: refused with a message; 1: '?', getopt said why */
			return tool_usage(prog, TOOL_EXIT_USAGE);
	}
	if (optind < argc) {
		fprintf(stderr, "%s: unexpected argument '%s'\n", prog, argv[optind]);
		return tool_usage(prog, TOOL_EXIT_USAGE);
	}
	if (!pid) {
		fprintf(stderr, "%s: --pid is required\n", prog);
		return tool_usage(prog, TOOL_EXIT_USAGE);
	}
	if (cfg.revert && (cfg.every_ms || cfg.rounds)) {
		fprintf(stderr, "%s: --revert runs no round: it does not take --every or --rounds\n",
			prog);
		return tool_usage(prog, TOOL_EXIT_USAGE);
	}
	tool_install_stop_handlers();
	struct tool_result res;
	tool_run((pid_t)pid, &cfg, &res);
	if (tool_stop_signal)
		return 128 + tool_stop_signal;
	return res.failed ? 1 : 0;
}
