/*
 * ocolos-agent — optimize an already running process by pid.
 *
 *   ocolos-agent --pid PID [--profile SEC] [--every SEC] [--rounds N] [...]
 *   ocolos-agent --pid PID --revert
 *   ocolos-agent --pid PID --artifact-out F | --artifact-in F [...]
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
	       "                        report, stage \"revert\"); not with --every/--rounds\n"
	       "      --artifact-out F  after each round's BOLT run, write its output to F as\n"
	       "                        an artifact (build-id, address, BOLT version and\n"
	       "                        options, SHA-256): for other instances of the build\n"
	       "      --artifact-in F   the first round applies the artifact F: no sampling,\n"
	       "                        no BOLT; F and its directory must be writable only by\n"
	       "                        you or root. Where its address range is taken, a\n"
	       "                        local round runs instead (with a message); another\n"
	       "                        build's, altered or truncated F: OCOLOS_EBADARTIFACT;\n"
	       "                        not with --export-profile, --profile-from,\n"
	       "                        --artifact-out or --revert\n",
	       prog);
	tool_help_common(stdout, 0);
}

int main(int argc, char **argv)
{
	static const struct option lo[] = { { "pid", required_argument, 0, 'p' },
		{ "revert", no_argument, 0, TOOL_OPT_REVERT },
		{ "artifact-out", required_argument, 0, TOOL_OPT_ARTIFACT_OUT },
		{ "artifact-in", required_argument, 0, TOOL_OPT_ARTIFACT_IN },
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
		if (c == TOOL_OPT_ARTIFACT_OUT || c == TOOL_OPT_ARTIFACT_IN) {
			if (!optarg[0]) {
				fprintf(stderr, "%s: --artifact-%s: an empty path\n", prog,
					c == TOOL_OPT_ARTIFACT_IN ? "in" : "out");
				return tool_usage(prog, TOOL_EXIT_USAGE);
			}
			*(c == TOOL_OPT_ARTIFACT_IN ? &cfg.artifact_in : &cfg.artifact_out) = optarg;
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
	if (cfg.artifact_in && (cfg.artifact_out || cfg.export_profile || cfg.nprofile_from ||
				cfg.revert)) {
		fprintf(stderr, "%s: --artifact-in applies code made elsewhere: it does not take "
			"--artifact-out, --export-profile, --profile-from or --revert\n", prog);
		return tool_usage(prog, TOOL_EXIT_USAGE);
	}
	if (cfg.artifact_out && cfg.revert) {
		fprintf(stderr, "%s: --revert runs no round: it does not take --artifact-out\n", prog);
		return tool_usage(prog, TOOL_EXIT_USAGE);
	}
	if (tool_check_options(&cfg))
		return tool_usage(prog, TOOL_EXIT_USAGE);
	tool_install_stop_handlers();
	struct tool_result res;
	tool_run((pid_t)pid, &cfg, &res);
	if (tool_stop_signal)
		return 128 + tool_stop_signal;
	return res.failed ? 1 : 0;
}
