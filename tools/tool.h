/*
 * What ocolos-agent and ocolos-supervise share: their common options and
 * the strict parsing of numbers (options.c), rounds on a pid run stage by
 * stage with progress on stderr and a stop on SIGINT/SIGTERM that cancels
 * the running call (rounds.c), and what a round reports on stdout — a JSON
 * line or a human-readable summary — with the binary and its build-id
 * (report.c). The contract (options, output, exit codes) is docs/tools.md
 * and the man pages in docs/man/; the JSON schema is
 * docs/tools.schema.json.
 *
 * The tools use nothing of libocolos but <ocolos/ocolos.h>.
 */
#ifndef OCOLOS_TOOLS_TOOL_H
#define OCOLOS_TOOLS_TOOL_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include <ocolos/ocolos.h>

/* Exit status of ocolos-agent for a command line it refuses (getopt's
 * convention). ocolos-supervise uses 125 instead, since its other exit
 * statuses are its child's (as env(1) and timeout(1) do). */
#define TOOL_EXIT_USAGE 2

/* Where the round reports go (stdout). */
enum tool_format {
	TOOL_FORMAT_AUTO = 0, /* text on a terminal, JSON otherwise */
	TOOL_FORMAT_JSON = 1, /* --json */
	TOOL_FORMAT_TEXT = 2, /* --text */
};

#define TOOL_PROFILES_MAX 64 /* --profile-from files */

/* The configuration both tools parse; zero means "the default". */
struct tool_cfg {
	const char *prog;	   /* "ocolos-agent": prefixes every message */
	uint32_t profile_ms;	   /* --profile: sampling window */
	int profile_explicit;	   /* --profile was given */
	uint32_t profile_max_ms;   /* --profile-max: converge, at most this */
	uint32_t max_overhead_permille; /* --max-overhead, in permille */
	uint32_t every_ms;	   /* --every: a new round every this; 0: not set */
	uint32_t rounds;	   /* --rounds; 0: 1, or unlimited with --every */
	uint32_t sample_hz;	   /* --hz; 0: the library's default */
	int sampler;		   /* --sampler: enum ocolos_sampler */
	uint32_t bolt_timeout_ms;  /* --bolt-timeout; 0: the library's */
	const char *bolt_path;	   /* --bolt */
	const char *binary_path;   /* --binary */
	const char *tmp_dir;	   /* --tmp-dir */
	int keep_work_dir;	   /* --keep-work-dir */
	const char *work_cmd;	   /* --work-cmd: the benefit check's counter */
	double benefit_min;	   /* --benefit-min; 0: the library's (1.0) */
	uint32_t benefit_pairs;	   /* --benefit-pairs; 0: the library's (5) */
	uint32_t benefit_window_ms; /* --benefit-window; 0: the library's (300) */
	const char *export_profile; /* --export-profile */
	/* --profile-from, repeatable: NULL-ended */
	const char *profile_from[TOOL_PROFILES_MAX + 1];
	unsigned nprofile_from;
	int revert;		   /* ocolos-agent --revert: back to the original code */
	const char *artifact_out;  /* ocolos-agent --artifact-out: each round's BOLT output */
	const char *artifact_in;   /* ocolos-agent --artifact-in: the first round applies it */
	int format;		   /* enum tool_format */
	int quiet;		   /* -q: no progress lines */
	int verbose;		   /* -v: library log (1 info, 2 debug) */
	/* Called about every 100 ms between rounds and after each round;
	 * non-zero ends the rounds. NULL: only the stop signal and the
	 * target's existence are checked. ocolos-supervise reaps its child
	 * here: a child that exited is a zombie, which kill(pid, 0) still
	 * finds. */
	int (*poll)(void *user);
	void *poll_user;
};

/* Defaults of the tools (the library's, where the tools have none). */
#define TOOL_DEFAULT_PROFILE_MS 2000u

/* ---- options (options.c) ---- */

/* Long-only options' getopt values, above every character. */
enum {
	TOOL_OPT_SAMPLER = 256,
	TOOL_OPT_HZ,
	TOOL_OPT_BOLT,
	TOOL_OPT_BOLT_TIMEOUT,
	TOOL_OPT_BINARY,
	TOOL_OPT_TMP_DIR,
	TOOL_OPT_KEEP_WORK_DIR,
	TOOL_OPT_JSON,
	TOOL_OPT_TEXT,
	TOOL_OPT_REVERT,
	TOOL_OPT_WORK_CMD,
	TOOL_OPT_BENEFIT_MIN,
	TOOL_OPT_BENEFIT_PAIRS,
	TOOL_OPT_BENEFIT_WINDOW,
	TOOL_OPT_EXPORT_PROFILE,
	TOOL_OPT_PROFILE_FROM,
	TOOL_OPT_ARTIFACT_OUT,
	TOOL_OPT_ARTIFACT_IN,
	TOOL_OPT_PROFILE_MAX,
	TOOL_OPT_MAX_OVERHEAD,
};

/* The getopt_long entries of the shared options, to be copied into a
 * tool's table (which ends with a zero entry), and their short letters. */
#define TOOL_COMMON_LONGOPTS                                                   \
	{ "profile", required_argument, 0, 'P' },                              \
	{ "profile-max", required_argument, 0, TOOL_OPT_PROFILE_MAX },         \
	{ "max-overhead", required_argument, 0, TOOL_OPT_MAX_OVERHEAD },       \
	{ "every", required_argument, 0, 'e' },                                \
	{ "rounds", required_argument, 0, 'n' },                               \
	{ "sampler", required_argument, 0, TOOL_OPT_SAMPLER },                 \
	{ "hz", required_argument, 0, TOOL_OPT_HZ },                           \
	{ "bolt", required_argument, 0, TOOL_OPT_BOLT },                       \
	{ "bolt-timeout", required_argument, 0, TOOL_OPT_BOLT_TIMEOUT },       \
	{ "binary", required_argument, 0, TOOL_OPT_BINARY },                   \
	{ "tmp-dir", required_argument, 0, TOOL_OPT_TMP_DIR },                 \
	{ "keep-work-dir", no_argument, 0, TOOL_OPT_KEEP_WORK_DIR },           \
	{ "work-cmd", required_argument, 0, TOOL_OPT_WORK_CMD },               \
	{ "benefit-min", required_argument, 0, TOOL_OPT_BENEFIT_MIN },         \
	{ "benefit-pairs", required_argument, 0, TOOL_OPT_BENEFIT_PAIRS },     \
	{ "benefit-window", required_argument, 0, TOOL_OPT_BENEFIT_WINDOW },   \
	{ "export-profile", required_argument, 0, TOOL_OPT_EXPORT_PROFILE },   \
	{ "profile-from", required_argument, 0, TOOL_OPT_PROFILE_FROM },       \
	{ "json", no_argument, 0, TOOL_OPT_JSON },                             \
	{ "text", no_argument, 0, TOOL_OPT_TEXT },                             \
	{ "quiet", no_argument, 0, 'q' },                                      \
	{ "verbose", no_argument, 0, 'v' },                                    \
	{ "help", no_argument, 0, 'h' },                                       \
	{ "version", no_argument, 0, 'V' }
#define TOOL_COMMON_SHORTOPTS "P:e:n:qvhV"

/* Handle the shared option `c` (from getopt_long) with argument `arg`:
 * 0 handled, 1 not a shared option (the tool's own, or '?'), -1 refused
 * (the message, naming the option, is printed). -h and -V are the tool's
 * to handle. */
int tool_option(struct tool_cfg *cfg, int c, const char *arg);
/* After all options: the shared ones that only make sense together. 0, or
 * -1 with the message printed. */
int tool_check_options(const struct tool_cfg *cfg);

/* Strict numbers: digits only (no sign, space, exponent or suffix), within
 * [min, max]. On error print "PROG: OPT: 'ARG' is ..." saying why (not a
 * number, negative, zero, out of range) and the range, and return -1. */
int tool_parse_uint(const char *prog, const char *opt, const char *arg, uint64_t min,
		    uint64_t max, uint64_t *out);
/* Seconds as "S", "S.s", ".s" with at most 3 decimals, to milliseconds in
 * [min_ms, max_ms]; errors as tool_parse_uint. */
int tool_parse_seconds(const char *prog, const char *opt, const char *arg, uint32_t min_ms,
		       uint32_t max_ms, uint32_t *out_ms);

/* "3600", "0.001", "1.5": milliseconds as a user writes seconds. */
void tool_format_seconds(uint32_t ms, char *buf, size_t size);

/* The help text of the shared options, the output and the exit statuses
 * (`supervise`: ocolos-supervise's, which are its child's, and its signals). */
void tool_help_common(FILE *f, int supervise);
/* --version: the tool's version and the library's (the one loaded). */
void tool_version(const char *prog);
/* "Try 'PROG --help'." on stderr; returns `code` for `return tool_usage(...)`. */
int tool_usage(const char *prog, int code);

/* ---- stopping (rounds.c) ---- */

/* The first of SIGINT/SIGTERM (ocolos-supervise: also SIGHUP/SIGQUIT)
 * received, or 0: the rounds end, and the tool's exit status says so. */
extern volatile sig_atomic_t tool_stop_signal;
/* Async-signal-safe: remember `sig` and cancel the call running on the
 * tool's context (ocolos_cancel), which returns at its next safe point. */
void tool_request_stop(int sig);
/* Install tool_request_stop for SIGINT and SIGTERM (ocolos-agent). */
void tool_install_stop_handlers(void);

/* ---- rounds (rounds.c) ---- */

struct tool_result {
	unsigned rounds;  /* rounds reported (the open counts if it failed) */
	unsigned failed;  /* of those, failed (canceled ones included) */
};

/* Run the configured rounds on `pid`, stage by stage, with progress lines
 * on stderr and one report per round on stdout; each round continues from
 * what the earlier ones (of this tool or of another agent) left in the
 * process, with the next generation of code. Stops early on a stop
 * signal, when cfg->poll says so, or when the target exits. With
 * cfg->revert, no round: the process goes back to its original code and
 * the optimized versions are unmapped, in one report. */
void tool_run(pid_t pid, const struct tool_cfg *cfg, struct tool_result *res);

/* ---- reports (report.c) ---- */

/* What a report says besides the library's stats. */
struct tool_round {
	pid_t pid;
	unsigned round;		/* 1, 2, ...; 0: opening the process failed */
	int rc;			/* 0 or OCOLOS_E* */
	const char *stage;	/* "open", "profile", "optimize", "replace", "revert" */
	const char *message;	/* ocolos_last_error() when rc != 0 */
	uint64_t stage_ns[4];	/* wall time of each stage, as measured here */
	uint64_t round_ns;	/* of the round (all its stages) */
	const char *binary;	/* the binary optimized, or NULL */
	const char *build_id;	/* its GNU build-id in hex, or NULL */
	const struct ocolos_stats *st;
	const char *artifact;	/* the artifact the round applies, or NULL */
};

/* The file behind process `pid` (or `binary_path` if set) and its build-id
 * (hex, "" when it has none), read with libelf from the file the process
 * runs (/proc/PID/exe, which still opens a deleted file). */
void tool_binary_info(pid_t pid, const char *binary_path, char *path, size_t path_size,
		      char *build_id, size_t build_id_size);

/* Print one report on stdout, as JSON or text per cfg->format (AUTO:
 * text if stdout is a terminal), and flush. */
void tool_report(const struct tool_cfg *cfg, const struct tool_round *r);

/* A progress line on stderr ("PROG: pid N: round R: ..."), unless -q. */
void tool_progress(const struct tool_cfg *cfg, pid_t pid, unsigned round, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#endif
