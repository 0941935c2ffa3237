/*
 * bam_spawn: runs a program through one member of the exec family, so the
 * BAM tests can check that each one is intercepted.
 *
 *   bam_spawn HOW PROG [ARGS...]
 *
 * HOW: execve execv execvp execvpe execl execlp execle posix_spawn
 * posix_spawnp vfork (vfork + execv, as GCC 12's driver runs cc1), and
 * posix_spawn_fa: posix_spawn with a file action (a chdir to "."). PROG is
 * a path for the path-taking calls and a name searched in PATH for the
 * p-variants. Exits with the child's status.
 */

/* (_GNU_SOURCE, from the build: posix_spawn_file_actions_addchdir_np) */
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static void run(const char *how, char **argv)
{
	const char *p = argv[0];
	if (!strcmp(how, "execve"))
		execve(p, argv, environ);
	else if (!strcmp(how, "execv"))
		execv(p, argv);
	else if (!strcmp(how, "execvp"))
		execvp(p, argv);
	else if (!strcmp(how, "execvpe"))
		execvpe(p, argv, environ);
	else if (!strcmp(how, "execl"))
		execl(p, argv[0], argv[1], argv[2], argv[3], (char *)NULL);
	else if (!strcmp(how, "execlp"))
		execlp(p, argv[0], argv[1], argv[2], argv[3], (char *)NULL);
	else if (!strcmp(how, "execle"))
		execle(p, argv[0], argv[1], argv[2], argv[3], (char *)NULL, environ);
	perror(how);
	_exit(127);
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: bam_spawn HOW PROG [ARGS...]\n");
		return 2;
	}
	const char *how = argv[1];
	char **args = argv + 2;
	pid_t pid;
	if (!strcmp(how, "posix_spawn") || !strcmp(how, "posix_spawnp")) {
		int rc = (how[11] == 'p' ? posix_spawnp : posix_spawn)(&pid, args[0], NULL, NULL,
								       args, environ);
		if (rc) {
			fprintf(stderr, "%s: %s\n", how, strerror(rc));
			return 127;
		}
	} else if (!strcmp(how, "posix_spawn_fa")) {
		posix_spawn_file_actions_t fa;
		int rc = posix_spawn_file_actions_init(&fa);
		if (!rc)
			rc = posix_spawn_file_actions_addchdir_np(&fa, ".");
		if (!rc)
			rc = posix_spawn(&pid, args[0], &fa, NULL, args, environ);
		if (rc) {
			fprintf(stderr, "%s: %s\n", how, strerror(rc));
			return 127;
		}
		posix_spawn_file_actions_destroy(&fa);
	} else if (!strcmp(how, "vfork")) {
		pid = vfork();
		if (pid == 0) {
			execv(args[0], args);
			_exit(127);
		}
	} else {
		pid = fork();
		if (pid == 0)
			run(how, args);
	}
	int st;
	if (pid < 0 || waitpid(pid, &st, 0) < 0)
		return 127;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
