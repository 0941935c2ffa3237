/*
 * An application of libocolos built out of tree against an installed copy
 * (run.sh: CMake's find_package(ocolos), pkg-config; shared and static).
 * It checks that the header and the library it got agree and that a call
 * works, and prints where the library's code came from (dladdr), so the
 * driver can tell the installed shared library, or the program itself for
 * a static link, from a stray copy in the build tree.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ocolos/ocolos.h>

int main(void)
{
	int bad = 0;
	if (ocolos_version_number() != OCOLOS_VERSION_NUMBER ||
	    strcmp(ocolos_version(), OCOLOS_VERSION_STRING) != 0) {
		fprintf(stderr, "header %s (%d), library %s (%u)\n", OCOLOS_VERSION_STRING,
			OCOLOS_VERSION_NUMBER, ocolos_version(), ocolos_version_number());
		bad = 1;
	}
	/* A reaped child's pid: no such process. */
	pid_t pid = fork();
	if (pid == 0)
		_exit(0);
	waitpid(pid, NULL, 0);
	OCOLOS_OPTS(ocolos_opts, o, .profile_ms = 100);
	struct ocolos_ctx *ctx = NULL;
	int rc = ocolos_open_pid(pid, &o, &ctx);
	if (rc != OCOLOS_ENOPROC || ctx || !ocolos_last_error(NULL)[0]) {
		fprintf(stderr, "ocolos_open_pid(%d): %d (%s), \"%s\"\n", (int)pid, rc,
			ocolos_strerror(rc), ocolos_last_error(NULL));
		bad = 1;
	}
	Dl_info info;
	const char *from = dladdr((void *)ocolos_version, &info) && info.dli_fname
				   ? info.dli_fname : "?";
	printf("libocolos %s from %s\n", ocolos_version(), from);
	return bad;
}
